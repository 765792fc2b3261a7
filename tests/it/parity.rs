//! Parity with torchvision on real photos, and real ImageNet weights.
//!
//! The references in tests/fixtures/parity/ were made by
//! tools/make_parity_fixture.py with PIL + torchvision + onnxruntime:
//! ```python
//! img = PIL.Image.open(p).convert('RGB')
//! t = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
//!                         transforms.Normalize(mean=[127/255]*3, std=[128/255]*3)])(img)   # Lite0: (x-127)/128
//! features = ort.InferenceSession('onnx/efficientnet_lite0.onnx').run(['features'], {'input': t[None].numpy()})
//! ```

use crate::common;

use ndarray::Array4;
use xfer::images::preprocess::{self, DecodeOptions};
use xfer::models::backbone::{Backbone, SessionOptions};
use xfer::models::zoo::Manifest;

#[test]
fn lite0_matches_torchvision_pipeline_on_real_photos() {
    let repo = common::repo();
    let fixture = repo.join("tests/fixtures/parity");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("index.json")).unwrap())
            .unwrap();
    common::setup_file("onnx/efficientnet_lite0.onnx");
    let manifest = Manifest::from_file(&repo.join("onnx/efficientnet_lite0.toml")).unwrap();
    assert_eq!(
        index["model_sha256"],
        manifest.sha256.as_str(),
        "fixture made with another model"
    );
    let rt = common::runtime();
    let mut backbone = Backbone::load(&rt, &manifest, &SessionOptions::default()).unwrap();
    let recipe = &manifest.preprocess;
    // The reference decodes without EXIF orientation and at full size, as PIL does.
    let opts = DecodeOptions::default();

    for case in index["cases"].as_array().unwrap() {
        let stem = case["stem"].as_str().unwrap();
        let source = repo.join(case["source"].as_str().unwrap());
        let source = if source.exists() {
            source
        } else {
            common::setup_file(case["source"].as_str().unwrap())
        };
        let mut ours = vec![0f32; recipe.tensor_len()];
        preprocess::load_tensor(&source, recipe, &opts, &mut ours).unwrap();
        let theirs = common::read_f16(&fixture.join(case["input_file"].as_str().unwrap()));
        assert_eq!(ours.len(), theirs.len());
        let mean_abs: f64 = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / ours.len() as f64;
        println!("{stem}: input mean |Δ| = {mean_abs:.5}");
        assert!(mean_abs <= 0.01, "{stem}: input mean |Δ| {mean_abs} > 0.01");

        let c = recipe.crop as usize;
        let input = Array4::from_shape_vec((1, 3, c, c), ours).unwrap();
        let out = backbone.run(input.view(), true).unwrap();
        let reference = common::read_f32(&fixture.join(case["features_file"].as_str().unwrap()));
        let cos = common::cosine(out.features.as_slice().unwrap(), &reference);
        println!("{stem}: feature cosine = {cos:.6}");
        assert!(cos >= 0.999, "{stem}: feature cosine {cos} < 0.999");
    }
}

fn top1(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

#[test]
fn lite0_weights_are_real_imagenet_weights() {
    // chelsea is a tabby cat, coffee a cup of espresso.
    let cats = [281, 282, 285]; // tabby, tiger cat, Egyptian cat
    let coffees = [504, 967, 968]; // coffee mug, espresso, cup
    let repo = common::repo();
    common::setup_file("onnx/efficientnet_lite0.onnx");
    let manifest = Manifest::from_file(&repo.join("onnx/efficientnet_lite0.toml")).unwrap();
    let rt = common::runtime();
    let mut backbone = Backbone::load(&rt, &manifest, &SessionOptions::default()).unwrap();
    for (photo, wanted) in [("chelsea.png", &cats), ("coffee.png", &coffees)] {
        let path = common::setup_file(&format!("data/photos/{photo}"));
        let c = manifest.preprocess.crop as usize;
        let mut t = vec![0f32; 3 * c * c];
        preprocess::load_tensor(
            &path,
            &manifest.preprocess,
            &DecodeOptions::default(),
            &mut t,
        )
        .unwrap();
        let input = Array4::from_shape_vec((1, 3, c, c), t).unwrap();
        let logits = backbone.run(input.view(), true).unwrap().logits.unwrap();
        let k = top1(logits.as_slice().unwrap());
        assert!(
            wanted.contains(&k),
            "{photo}: top-1 ImageNet class {k}, expected one of {wanted:?}"
        );
    }
}
