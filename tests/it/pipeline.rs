//! The pipeline as a Rust program uses it: `train_run` and `evaluate_model` on a tiny generated
//! corpus, progress through the caller's `Progress`, a stop flag of the caller's own (an
//! interrupted run, then a second run in the same process with a fresh flag, resumed), and the
//! requests checked before anything is written.

use captioner::data::synth::{generate, SynthOptions};
use captioner::data::SplitName;
use captioner::model::resnet::{formula, Arch};
use captioner::model::weights::save_safetensors;
use captioner::pipeline::{evaluate_model, train_run, CorpusSpec, EvalRequest, TrainRequest};
use captioner::progress::{Collect, Level, Progress, Silent, Task, Unit};
use captioner::{CaptionOptions, Captioner, Error};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A corpus of 40 scenes and a formula ResNet-18, under `root`.
fn corpus(root: &Path) -> (PathBuf, PathBuf) {
    let scenes = root.join("scenes");
    generate(
        &scenes,
        &SynthOptions {
            images: 40,
            seed: 0,
            force: false,
        },
    )
    .unwrap();
    let backbone = root.join("resnet18.safetensors");
    save_safetensors(&backbone, &formula::state_dict(Arch::ResNet18).unwrap()).unwrap();
    (scenes, backbone)
}

fn request(scenes: &Path, backbone: &Path, run: &Path, epochs: usize) -> TrainRequest {
    let mut r = TrainRequest::new(CorpusSpec::new(scenes), backbone, run);
    r.arch = Arch::ResNet18;
    r.image_size = 64;
    r.epochs = Some(epochs);
    r.batch_size = 16;
    r
}

/// Counts what the tasks report and keeps the log lines.
#[derive(Default)]
struct Recorder {
    lines: Collect,
    tasks: Mutex<Vec<(String, Option<u64>, Unit)>>,
    advanced: Arc<AtomicU64>,
}

struct Counted(Arc<AtomicU64>);

impl Task for Counted {
    fn advance(&self, n: u64) {
        self.0.fetch_add(n, Ordering::SeqCst);
    }
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: &str) {}
    fn finish(&self) {}
}

impl Progress for Recorder {
    fn task(&self, name: &str, total: Option<u64>, unit: Unit) -> Box<dyn Task> {
        self.tasks
            .lock()
            .unwrap()
            .push((name.to_string(), total, unit));
        Box::new(Counted(self.advanced.clone()))
    }
    fn log(&self, level: Level, line: &str) {
        self.lines.log(level, line);
    }
}

#[test]
fn train_then_evaluate_through_the_library_reports_through_the_callers_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (scenes, backbone) = corpus(dir.path());
    let run = dir.path().join("run");
    let recorder = Recorder::default();
    let report = train_run(
        &request(&scenes, &backbone, &run, 2),
        &recorder,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    assert_eq!(report.outcome.epochs_done, 2);
    assert_eq!(report.features.computed, 40);
    assert!(report.run.best().is_file());

    let tasks = recorder.tasks.lock().unwrap().clone();
    let names: Vec<&str> = tasks.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(names, ["features", "epoch 1/2", "epoch 2/2"], "{tasks:?}");
    assert_eq!(tasks[0].1, Some(40));
    assert_eq!(tasks[0].2, Unit::Images);
    assert_eq!(tasks[1].2, Unit::Batches);
    let batches = tasks[1].1.unwrap();
    assert_eq!(
        recorder.advanced.load(Ordering::SeqCst),
        40 + 2 * batches,
        "every image and every batch is reported"
    );
    let lines: Vec<String> = recorder.lines.lines().into_iter().map(|l| l.1).collect();
    assert!(
        lines[0].starts_with("corpus: 40 images, 200 captions"),
        "{lines:?}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("features: 0 reused, 40 computed")));
    assert!(lines.iter().any(|l| l.starts_with("epoch 2/2: train loss")));

    let model = Captioner::load(&run, &captioner::device::default_device()).unwrap();
    let eval = EvalRequest {
        corpus: CorpusSpec::new(&scenes),
        part: SplitName::Test,
        options: CaptionOptions::default(),
        use_cache: true,
    };
    let ev = evaluate_model(&model, &eval, &Silent).unwrap();
    let test_images = model.split().unwrap().test.len();
    assert_eq!(ev.scores.images, test_images);
    assert_eq!(
        ev.from_cache, test_images,
        "the run's cache serves its own corpus"
    );
    assert!(ev.failed.is_empty());
    assert_eq!(ev.hyps.len(), test_images);
    for (name, path) in &ev.paths {
        assert_eq!(path, &scenes.join("Images").join(name));
    }
    // The trunk path gives the same captions as the cache.
    let no_cache = EvalRequest {
        use_cache: false,
        ..eval
    };
    let ev2 = evaluate_model(&model, &no_cache, &Silent).unwrap();
    assert_eq!(ev2.from_cache, 0);
    assert_eq!(ev2.hyps, ev.hyps);
}

#[test]
fn a_stopped_run_resumes_with_a_fresh_flag_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    let (scenes, backbone) = corpus(dir.path());
    let run = dir.path().join("run");
    let stop = Arc::new(AtomicBool::new(true));
    let err = train_run(&request(&scenes, &backbone, &run, 2), &Silent, stop.clone()).unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err}");
    assert!(run.join("last").join("state.json").is_file());

    // The first run's flag stays set; the second run has its own and runs to the end.
    let mut again = request(&scenes, &backbone, &run, 2);
    again.resume = true;
    let report = train_run(&again, &Silent, Arc::new(AtomicBool::new(false))).unwrap();
    assert_eq!(report.outcome.epochs_done, 2);
    assert_eq!(report.features.reused, 40, "the cache is reused on resume");
}

#[test]
fn a_second_run_into_the_same_directory_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (scenes, backbone) = corpus(dir.path());
    let run = dir.path().join("run");
    train_run(
        &request(&scenes, &backbone, &run, 1),
        &Silent,
        Default::default(),
    )
    .unwrap();
    let config = std::fs::read(run.join("config.json")).unwrap();
    let err = train_run(
        &request(&scenes, &backbone, &run, 1),
        &Silent,
        Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("already holds a run"), "{err}");
    assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config);

    let mut no_backbone = request(&scenes, &backbone, &dir.path().join("other"), 1);
    no_backbone.backbone = None;
    let err = train_run(&no_backbone, &Silent, Default::default()).unwrap_err();
    assert!(err.to_string().contains("--backbone"), "{err}");
    assert!(!dir.path().join("other").join("config.json").exists());
}
