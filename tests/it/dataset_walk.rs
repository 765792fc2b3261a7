//! The dataset walker on hostile trees, through the library and through
//! `xfer extract`: a stray image at the root, symlink loops, names that are not
//! UTF-8 or merely odd. Nothing is dropped or duplicated without a word.

use crate::common;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use xfer::features::store;
use xfer::images::dataset::{self, IgnoredKind, Layout};

fn extract(data: &Path, out: &Path) -> std::process::Output {
    common::tiny_extract(data, out, &[])
}

fn kinds(ds: &dataset::Dataset) -> Vec<(String, IgnoredKind)> {
    ds.ignored
        .iter()
        .map(|i| (i.path.to_string_lossy().into_owned(), i.kind))
        .collect()
}

#[test]
fn stray_root_image_keeps_the_class_folders() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["birds", "fish"], 3);
    common::pattern(40, 40, 9)
        .save(data.join("stray.jpg"))
        .unwrap();

    let ds = dataset::scan(&data, None).unwrap();
    assert_eq!(ds.layout, Layout::ImageFolder);
    assert_eq!(ds.classes, ["birds", "fish"]);
    assert_eq!(ds.items.len(), 6);
    assert_eq!(kinds(&ds), [("stray.jpg".into(), IgnoredKind::RootFile)]);
    assert!(ds.ignored[0]
        .reason
        .contains("ImageFolder takes images from class folders only"));

    let out = t.path().join("f.h5");
    let o = extract(&data, &out);
    assert!(o.status.success(), "{}", common::text(&o));
    let f = store::read(&out).unwrap();
    assert_eq!(f.labels.to_vec(), [0, 0, 0, 1, 1, 1]);
    assert_eq!(f.provenance.unwrap().class_names, ["birds", "fish"]);
}

#[test]
fn symlink_loop_in_a_class_folder_takes_each_photo_once() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["birds", "fish"], 2);
    symlink("..", data.join("birds/up")).unwrap();
    symlink(".", data.join("fish/again")).unwrap();

    let ds = dataset::scan(&data, None).unwrap();
    assert_eq!(ds.items.len(), 4);
    assert_eq!(
        kinds(&ds),
        [
            ("birds/up".into(), IgnoredKind::SymlinkLoop),
            ("fish/again".into(), IgnoredKind::SymlinkLoop)
        ]
    );

    let out = t.path().join("f.h5");
    let o = extract(&data, &out);
    assert!(o.status.success(), "{}", common::text(&o));
    let f = store::read(&out).unwrap();
    let paths = f.paths.unwrap();
    assert_eq!(
        paths,
        [
            "birds/0000.jpg",
            "birds/0001.png",
            "fish/0000.jpg",
            "fish/0001.png"
        ]
    );
}

#[test]
fn a_non_utf8_name_is_skipped_not_fatal() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 2);
    let bad = OsString::from_vec(b"caf\xe9.jpg".to_vec());
    std::fs::copy(data.join("a/0000.jpg"), data.join("a").join(&bad)).unwrap();

    let ds = dataset::scan(&data, None).unwrap();
    assert_eq!(ds.items.len(), 4);
    assert_eq!(
        kinds(&ds),
        [("a/caf\u{fffd}.jpg".into(), IgnoredKind::NonUtf8Name)]
    );
    assert!(
        ds.ignored[0].reason.contains("not UTF-8"),
        "{}",
        ds.ignored[0]
    );

    let out = t.path().join("f.h5");
    let o = extract(&data, &out);
    assert!(o.status.success(), "{}", common::text(&o));
    assert_eq!(store::read(&out).unwrap().data.nrows(), 4);
}

#[test]
fn odd_names_are_stored_as_they_are() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    common::make_image_folder(&data, &["a", "b"], 1);
    let long = format!("{}.png", "n".repeat(251));
    let odd = [
        "with,comma.png",
        "with\"quote'.png",
        "with\nnewline.png",
        long.as_str(),
    ];
    for n in odd {
        std::fs::copy(data.join("b/0000.jpg"), data.join("b").join(n)).unwrap();
    }
    let ds = dataset::scan(&data, None).unwrap();
    assert!(ds.ignored.is_empty(), "{:?}", ds.ignored);
    let out = t.path().join("f.h5");
    let o = extract(&data, &out);
    assert!(o.status.success(), "{}", common::text(&o));
    let paths = store::read(&out).unwrap().paths.unwrap();
    let mut want = vec!["a/0000.jpg".to_string(), "b/0000.jpg".to_string()];
    want.extend(odd.iter().map(|n| format!("b/{n}")));
    want[1..].sort();
    assert_eq!(paths, want);
}

#[test]
fn kaggle_flat_is_still_detected() {
    let t = tempfile::tempdir().unwrap();
    for n in ["cat.0.jpg", "dog.1.jpg", "cat.2.jpg"] {
        common::pattern(20, 20, 1).save(t.path().join(n)).unwrap();
    }
    let ds = dataset::scan(t.path(), None).unwrap();
    assert_eq!(ds.layout, Layout::KaggleFlat);
    assert_eq!(ds.classes, ["cat", "dog"]);
    // An explicit layout is honoured, what it leaves out reported.
    std::fs::create_dir(t.path().join("extra")).unwrap();
    common::pattern(20, 20, 1)
        .save(t.path().join("extra/x.jpg"))
        .unwrap();
    let ds = dataset::scan(t.path(), Some(Layout::KaggleFlat)).unwrap();
    assert_eq!(ds.items.len(), 3);
    assert_eq!(
        kinds(&ds),
        [("extra".into(), IgnoredKind::FolderInFlatLayout)]
    );
    // Detected, the image-holding folder wins and the root files are reported.
    let ds = dataset::scan(t.path(), None).unwrap();
    assert_eq!(ds.layout, Layout::ImageFolder);
    assert_eq!(ds.classes, ["extra"]);
    assert_eq!(ds.ignored.len(), 3);
    assert!(ds.ignored.iter().all(|i| i.kind == IgnoredKind::RootFile));
}
