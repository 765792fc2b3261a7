"""The Kubernetes recipe (tools/k8s/extract-job.yaml), checked without a cluster:

1. Every object is validated strictly against the Kubernetes API schema of each
   version from 1.29 (backoffLimitPerIndex's first beta) to 1.37, offline, with
   the PyPI package kubernetes-validate; a copy with one misspelt field must fail
   (so the check is not vacuous). Then what the schema cannot see: an Indexed Job
   with restartPolicy Never (backoffLimitPerIndex needs it), N equal to
   completions and to the merge's shard count, the merge's shard folder equal to
   SHARDS, the same volume mounts and image in both Jobs.
2. Each pod's command runs as the pod would: its container's env (plus
   JOB_COMPLETION_INDEX), its volume mounted at its mountPath, and the image's
   /opt/xfer (this checkout's xfer, tools/, zoo and ONNX Runtime) — in a chroot of
   its own, in a private mount namespace. Pod 1 is killed with SIGKILL mid-run and
   run again, as backoffLimitPerIndex retries it. Then the merge Job's command, and
   the merged file is compared with an unsharded extraction (tools/h5_same.py).
   This machine has no GPU: "--device cuda" in XFER_FLAGS is replaced by
   "--device cpu" (said in the output); nothing else of the manifest is changed.

Needs root (mount namespace, chroot); without it, prints SKIPPED.
    .venv/bin/python tools/k8s/check.py [XFER_BINARY]
"""
import copy
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(REPO, "tools/k8s/extract-job.yaml")
VERSIONS = [f"1.{m}.0" for m in range(29, 38)]


def say(msg):
    print(f"\033[1mk8s check:\033[0m {msg}", flush=True)


def fail(msg):
    say(f"FAILED: {msg}")
    sys.exit(1)


def validate(path, version):
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, path],
        capture_output=True, text=True)


def check_schema(docs, tmp):
    for v in VERSIONS:
        r = validate(MANIFEST, v)
        if r.returncode != 0:
            fail(f"Kubernetes {v} schema: {r.stdout}{r.stderr}")
    bad = copy.deepcopy(docs)
    bad[0]["spec"]["backoffLimitPerIndx"] = bad[0]["spec"].pop("backoffLimitPerIndex")
    bad_path = os.path.join(tmp, "bad.yaml")
    with open(bad_path, "w") as f:
        yaml.safe_dump_all(bad, f)
    if validate(bad_path, VERSIONS[0]).returncode == 0:
        fail("a misspelt field passed validation: the validator checks nothing")
    say(f"schema: both Jobs valid (strict) for Kubernetes {VERSIONS[0]} .. {VERSIONS[-1]}; a misspelt field is caught")


def container(job):
    return job["spec"]["template"]["spec"]["containers"][0]


def check_semantics(extract, merge):
    spec = extract["spec"]
    env = {e["name"]: e["value"] for e in container(extract)["env"]}
    n = int(env["N"])
    problems = []
    if spec.get("completionMode") != "Indexed":
        problems.append("the extract Job is not completionMode: Indexed")
    if spec["template"]["spec"].get("restartPolicy") != "Never":
        problems.append("backoffLimitPerIndex needs restartPolicy: Never")
    if spec.get("completions") != n:
        problems.append(f"completions {spec.get('completions')} != N {n}")
    if spec.get("parallelism", 1) > n:
        problems.append("parallelism > completions")
    margs = " ".join(container(merge).get("args", []))
    shard_files = sorted(set(f"{env['SHARDS']}/shard-{i}-of-{n}.h5" for i in range(n)))
    expanded = subprocess.run(["/bin/sh", "-c", "echo " + margs.replace("exec ", "", 1)],
                              capture_output=True, text=True).stdout.split()
    if sorted(p for p in expanded if p.endswith(".h5") and "shard-" in p) != shard_files:
        problems.append(f"the merge's shard files are not the N={n} files of {env['SHARDS']}")
    if f"--out {env['SHARDS'][:-len('.shards')]}" not in margs:
        problems.append("the merge's --out is not SHARDS without .shards")
    if container(extract)["image"] != container(merge)["image"]:
        problems.append("the two Jobs use different images")
    if container(extract)["volumeMounts"] != container(merge)["volumeMounts"]:
        problems.append("the two Jobs mount different volumes")
    if problems:
        fail("; ".join(problems))
    say(f"semantics: Indexed, restartPolicy Never, N = completions = merge shards = {n}")
    return env, n


def pod_root(tmp, xfer, data_volume, mount_path):
    """The pod's filesystem: the host's /usr and /etc read-only (the image's OS),
    /opt/xfer as the image has it, the volume at its mountPath."""
    root = os.path.join(tmp, "root")
    opt = os.path.join(tmp, "image-opt-xfer")
    if not os.path.isdir(opt):
        os.makedirs(os.path.join(opt, "bin"))
        shutil.copy2(xfer, os.path.join(opt, "bin/xfer"))
        shutil.copytree(os.path.join(REPO, "tools"), os.path.join(opt, "tools"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        os.makedirs(os.path.join(opt, "onnx"))
        for f in ("efficientnet_lite0.toml", "efficientnet_lite0.onnx"):
            shutil.copy2(os.path.join(REPO, "onnx", f), os.path.join(opt, "onnx", f))
        lib = subprocess.run([xfer, "info"], capture_output=True, text=True).stdout
        lib = next(l.split(" from ", 1)[1] for l in lib.splitlines() if l.startswith("ONNX Runtime "))
        os.makedirs(os.path.join(opt, "onnxruntime"))
        shutil.copy2(lib, os.path.join(opt, "onnxruntime", os.path.basename(os.path.realpath(lib))))
        shutil.copy2(lib, os.path.join(opt, "onnxruntime/libonnxruntime.so.1.31.1"))
    if not os.path.isdir(root):
        for d in ("usr", "etc", "dev", "proc", "tmp", "opt/xfer", mount_path.lstrip("/")):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        for link in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{link}"):
                os.symlink(os.readlink(f"/{link}"), os.path.join(root, link))
        os.chmod(os.path.join(root, "tmp"), 0o1777)
    binds = [("/usr", "usr", "ro"), ("/etc", "etc", "ro"), ("/dev", "dev", "rw"), ("/proc", "proc", "rw"),
             (opt, "opt/xfer", "ro"), (data_volume, mount_path.lstrip("/"), "rw")]
    return root, binds


def pod_command(root, binds, env, argv):
    """A bash line: private mount namespace, the binds, chroot, the pod's env only."""
    lines = ["set -e"]
    for src, dst, mode in binds:
        target = shlex.quote(os.path.join(root, dst))
        lines.append(f"mount --rbind {shlex.quote(src)} {target}")
        if mode == "ro":
            lines.append(f"mount -o remount,bind,ro {target}")
    envs = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    lines.append(f"exec chroot {shlex.quote(root)} /usr/bin/env -i {envs} "
                 + " ".join(shlex.quote(a) for a in argv))
    return ["unshare", "-m", "--propagation", "private", "bash", "-c", "\n".join(lines)]


def main():
    if os.geteuid() != 0:
        say("SKIPPED: needs root (mount namespace and chroot) — the Kubernetes pods were NOT run")
        return
    xfer = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target/release/xfer"))
    with open(MANIFEST) as f:
        docs = list(yaml.safe_load_all(f))
    by_step = {d["metadata"]["labels"]["step"]: d for d in docs}
    extract, merge = by_step["extract"], by_step["merge"]
    tmp = tempfile.mkdtemp(prefix="xfer-k8s.")
    check_schema(docs, tmp)
    env, n = check_semantics(extract, merge)

    # The shared volume: real photos at DATA (its path inside the pod).
    mount = container(extract)["volumeMounts"][0]["mountPath"]
    volume = os.path.join(tmp, "volume")
    data_in_pod = env["DATA"]
    photos = os.path.join(volume, os.path.relpath(data_in_pod, mount))
    for c in ("flowers", "fruit", "vegetables", "vehicles"):
        os.makedirs(os.path.join(photos, c))
        for name in sorted(os.listdir(os.path.join(REPO, "data/stamps", c))):
            for k in range(8):  # 176 photos a shard: two batches of the manifest's 128
                shutil.copy2(os.path.join(REPO, "data/stamps", c, name), os.path.join(photos, c, f"{k}-{name}"))
    open(os.path.join(photos, "fruit/broken.jpg"), "wb").close()

    pod_env = dict(env, PATH="/usr/local/bin:/usr/bin:/bin", HOME="/root", HOSTNAME="xfer-extract-pod",
                   XFER_PROGRESS_INTERVAL="0.2")
    if "--device cuda" in pod_env.get("XFER_FLAGS", ""):
        pod_env["XFER_FLAGS"] = pod_env["XFER_FLAGS"].replace("--device cuda", "--device cpu")
        say(f"no GPU here: XFER_FLAGS '{env['XFER_FLAGS']}' runs as '{pod_env['XFER_FLAGS']}'")
    root, binds = pod_root(tmp, xfer, volume, mount)
    argv = container(extract)["command"] + container(extract).get("args", [])

    def pod(i, **kw):
        return subprocess.Popen(pod_command(root, binds, dict(pod_env, JOB_COMPLETION_INDEX=str(i)), argv),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)

    # Pod 1 first, killed once it is under way; then every index, pod 1 again (the retry).
    p = pod(1, start_new_session=True)
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        seen += line
        if re.match(r"extract: [1-9][0-9]*/", line):  # a batch is done
            os.killpg(p.pid, signal.SIGKILL)
            break
    p.wait()
    while True:  # every process of the pod gone (the kernel frees xfer's lock then)
        try:
            os.killpg(p.pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            break
    if p.returncode == 0:
        fail(f"pod 1 finished before it could be killed:\n{seen}")
    say(f"pod 1 killed with SIGKILL mid-run (status {p.returncode})")
    logs = {}
    for i in [1] + [i for i in range(n) if i != 1]:
        q = pod(i)
        out, _ = q.communicate(timeout=600)
        if q.returncode != 0:
            fail(f"pod {i} exited {q.returncode}:\n{out}")
        logs[i] = out
    resumed = [l for l in logs[1].splitlines() if "resumed after" in l]
    if not resumed:
        fail(f"the retried pod 1 did not resume:\n{logs[1]}")
    say("every index ran; the retried pod 1 " + resumed[0].split("(")[1].split(")")[0])
    # A pod retried after its shard completed (a lost status) does nothing.
    q = pod(2)
    out, _ = q.communicate(timeout=600)
    if q.returncode != 0 or "nothing to do" not in out:
        fail(f"pod 2 run again: status {q.returncode}:\n{out}")

    margv = container(merge)["command"] + container(merge).get("args", [])
    q = subprocess.run(pod_command(root, binds, dict(pod_env, HOSTNAME="xfer-merge-pod"), margv),
                       capture_output=True, text=True)
    if q.returncode != 0:
        fail(f"the merge Job's command exited {q.returncode}:\n{q.stdout}{q.stderr}")
    merged = os.path.join(volume, os.path.relpath(env["SHARDS"][: -len(".shards")], mount))

    # The unsharded reference, in a pod too (the same paths, zoo and library).
    whole = os.path.join(volume, "whole.h5")
    flags = shlex.split(pod_env.get("XFER_FLAGS", ""))
    r = subprocess.run(pod_command(root, binds, pod_env, [env["XFER"], "extract", "--model", env["MODEL"], "--data",
                                                          data_in_pod, "--out", mount + "/whole.h5", "--quiet"] + flags),
                       capture_output=True, text=True)
    if r.returncode not in (0, 3):
        fail(f"the unsharded extraction failed: {r.stdout}{r.stderr}")
    r = subprocess.run([sys.executable, os.path.join(REPO, "tools/h5_same.py"), whole, merged],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail(r.stderr)
    say(f"merged file == unsharded extraction ({r.stdout.strip()})")
    shutil.rmtree(tmp)
    say("passed")


if __name__ == "__main__":
    main()
