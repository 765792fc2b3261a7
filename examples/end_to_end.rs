//! A folder of photos → features → a trained head → predictions, through
//! xfer's library front door (the same types `xfer extract`, `xfer train`
//! and `xfer predict` use).
//!
//!     cargo run --release --example end_to_end -- data/stamps /tmp/xfer-example
//!
//! PHOTOS is an ImageFolder (`PHOTOS/<class>/*.jpg`); WORK receives
//! `features.h5` and the run folder `run/`. Needs the set-up of
//! `tools/setup.sh` (ONNX Runtime and the efficientnet_lite0 backbone).

use std::path::PathBuf;

use xfer::train::run::{fit_logistic, fit_mlp, recommend, save};
use xfer::{
    Choices, Event, Extraction, Plan, Predictor, PredictorOptions, RunFolder, Runtime, Source,
    TrainingData, Zoo,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [photos, work] = &args[..] else {
        return Err("usage: end_to_end PHOTOS WORK".into());
    };
    std::fs::create_dir_all(work)?;

    // 1. Features: every photo through the backbone into an HDF5 feature file.
    let features = work.join("features.h5");
    let mut job = Extraction::new(Source::folder(photos), "efficientnet_lite0", &features);
    job.existing = xfer::Existing::Overwrite;
    let outcome = job.run(&mut |event| {
        if let Event::Loaded { backbone, .. } = event {
            eprintln!("backbone loaded on {}", backbone.provider);
        }
    })?;
    eprintln!("{} rows in {}", outcome.rows(), features.display());

    // 2. Heads: the default preset (cross-validated, calibrated), both heads.
    let plan = Plan::resolve(&Choices {
        train_files: vec![features],
        ..Choices::default()
    })?;
    let mut data = TrainingData::load(&plan)?;
    let trained = vec![
        fit_logistic(&plan, &data)?,
        fit_mlp(&plan, &mut data, &mut |_| {})?,
    ];
    let mut reports: Vec<_> = trained.iter().map(|t| t.report.clone()).collect();
    let best = recommend(&mut reports).ok_or("no held-out rows to choose a head by")?;
    let run = RunFolder::new(work.join("run"));
    let _lock = run.lock()?;
    save(&run, &plan, &data, &trained, &reports, Some(best))?;
    eprintln!("recommended: {}", reports[best].bundle);

    // 3. Predictions with the recommended head, on the first photo of each class.
    let runtime = Runtime::init(None)?;
    let bundle = run.file(RunFolder::BEST);
    let opts = PredictorOptions::default();
    let mut predictor = Predictor::open(&bundle, &Zoo::locate(None), &runtime, opts)?;
    let mut images = Vec::new();
    for class in std::fs::read_dir(photos)? {
        let class = class?.path();
        if class.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&class)?
                .map(|f| f.map(|f| f.path()))
                .collect::<Result<_, _>>()?;
            files.sort();
            images.extend(files.into_iter().take(1));
        }
    }
    images.sort();
    let preds = predictor.predict(&images, &mut |_| {})?;
    let names = predictor.class_names();
    for (path, row) in preds.paths.iter().zip(preds.probs.rows()) {
        let (k, p) = xfer::train::head::argmax(row);
        println!("{}\t{}\t{p:.3}", path.display(), names[k]);
    }
    Ok(())
}
