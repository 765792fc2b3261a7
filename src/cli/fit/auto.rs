//! `--model auto`: the zoo's real-weight backbones that are present, and
//! their concatenation, screened by the cross-validated log loss of the
//! logistic head on the training split (one `xfer train` each); the best is kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use xfer::models::zoo::{Weights, Zoo};
use xfer::train::folder::RunFolder;
use xfer::util::format::fixed;

use super::features::{Features, Listed};
use super::runner::{each, Runner};
use super::{s, FitArgs, AUTO_FOLDS};

/// One screened backbone (or concatenation) and its scores.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Candidate {
    models: Vec<String>,
    n_features: Option<u64>,
    cv_log_loss: Option<f64>,
    cv_log_loss_sd: Option<f64>,
    cv_accuracy: Option<f64>,
    cv_accuracy_sd: Option<f64>,
    run: PathBuf,
    chosen: bool,
}

/// The backbones of this run: those named, or `--model auto`'s choice with
/// the candidates it screened.
pub(super) fn choose(
    args: &FitArgs,
    features: &mut Features,
    runner: &mut Runner,
    train: &Listed,
    test: &Listed,
) -> Result<(Vec<String>, Option<Vec<Candidate>>)> {
    if !(args.models.len() == 1 && args.models[0] == "auto") {
        return Ok((args.models.clone(), None));
    }
    let (names, notes) = auto_candidates(&features.zoo)?;
    for n in notes {
        eprintln!("note: --model auto: {n}");
    }
    let mut train_files = BTreeMap::new();
    // With one candidate, its test photos are extracted with the training ones.
    let also = (names.len() == 1).then_some(test);
    for m in &names {
        let f = features.prepare(runner, m, "train", train, also)?;
        train_files.insert(m.clone(), f);
    }
    if names.len() == 1 {
        eprintln!(
            "\n--model auto: {} is the only backbone with real weights in the zoo {}",
            names[0],
            features.zoo.dir.display()
        );
        return Ok((names, None));
    }
    let mut combos: Vec<Vec<String>> = names.iter().map(|n| vec![n.clone()]).collect();
    combos.push(names.clone());
    let mut cands = Vec::new();
    for combo in combos {
        cands.push(screen(args, runner, &combo, &train_files)?);
    }
    let best = cands
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.cv_log_loss.map(|l| (i, l)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
        .ok_or_else(|| anyhow!("--model auto: no screening run has a cross-validated log loss"))?;
    cands[best].chosen = true;
    eprintln!(
        "\n--model auto: {AUTO_FOLDS}-fold cross-validated log loss of the logistic head on the training split (* = kept)\n{}",
        candidate_table(&cands)
    );
    Ok((cands[best].models.clone(), Some(cands)))
}

/// The backbones `--model auto` tries: real weights, model file present.
fn auto_candidates(zoo: &Zoo) -> Result<(Vec<String>, Vec<String>)> {
    let mut names = Vec::new();
    let mut notes = Vec::new();
    let manifests = zoo
        .manifests()
        .with_context(|| format!("reading the zoo {}", zoo.dir.display()))?;
    for m in manifests {
        if m.weights != Weights::Pretrained {
            continue;
        }
        match m.verify_file() {
            Ok(()) => names.push(m.name.clone()),
            Err(e) if m.check_present().is_ok() => notes.push(format!("{} left out: {e}", m.name)),
            Err(_) => {}
        }
    }
    if names.is_empty() {
        bail!(
            "--model auto: no backbone with real weights is present in the zoo {}; fetch one (`xfer models fetch efficientnet_lite0`, or tools/setup.sh) or name one with --model",
            zoo.dir.display()
        );
    }
    Ok((names, notes))
}

/// The screening run of `combo` (OUT/auto/A+B): the logistic head,
/// cross-validated, on the training features `train_files` of its backbones.
fn screen(
    args: &FitArgs,
    runner: &mut Runner,
    combo: &[String],
    train_files: &BTreeMap<String, PathBuf>,
) -> Result<Candidate> {
    let dir = args.out.join("auto").join(combo.join("+"));
    std::fs::create_dir_all(&dir)?;
    let inputs: Vec<&Path> = combo.iter().map(|m| train_files[m].as_path()).collect();
    let mut a = each("--train", &inputs);
    a.extend([
        "--head".into(),
        "logistic".into(),
        "--cv".into(),
        AUTO_FOLDS.to_string(),
        "--seed".into(),
        args.seed.to_string(),
        "--out".into(),
        s(&dir),
        "--quiet".into(),
    ]);
    let argv = runner.argv("train", a);
    let folder = RunFolder::new(&dir);
    runner.step(
        &format!("auto-{}", combo.join("+")),
        argv,
        &inputs,
        &[folder.file(RunFolder::METRICS)],
        &folder.existing(),
    )?;
    let scores = folder
        .first_head_scores()?
        .ok_or_else(|| anyhow!("{} has no heads", folder.file(RunFolder::METRICS).display()))?;
    Ok(Candidate {
        models: combo.to_vec(),
        n_features: scores.n_features,
        cv_log_loss: scores.log_loss,
        cv_log_loss_sd: scores.log_loss_sd,
        cv_accuracy: scores.accuracy,
        cv_accuracy_sd: scores.accuracy_sd,
        run: dir,
        chosen: false,
    })
}

/// The table of the screened candidates (`*`: the one kept).
fn candidate_table(cands: &[Candidate]) -> String {
    let mut t = format!(
        "{:<40} {:>9} {:>20} {:>20}\n",
        "backbone(s)", "features", "cv log loss", "cv accuracy"
    );
    let pm = |m: Option<f64>, sd: Option<f64>, scale: f64, d: usize| match m {
        Some(m) => format!(
            "{} ± {}",
            fixed(scale * m, d),
            fixed(scale * sd.unwrap_or(0.0), d)
        ),
        None => "—".into(),
    };
    for c in cands {
        t += &format!(
            "{:<40} {:>9} {:>20} {:>18} %{}\n",
            c.models.join(" + "),
            c.n_features.map_or("—".into(), |n| n.to_string()),
            pm(c.cv_log_loss, c.cv_log_loss_sd, 1.0, 4),
            pm(c.cv_accuracy, c.cv_accuracy_sd, 100.0, 2),
            if c.chosen { "  *" } else { "" }
        );
    }
    t
}
