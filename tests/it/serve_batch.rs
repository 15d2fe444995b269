//! The server's batching with the real model: uploads captioned together get the captions each
//! gets alone (greedy and beam, a bad upload failing on its own), and concurrent requests to a
//! server are really batched, each answered with its own image's caption.

use crate::caption::trained;
use candle_core::Device;
use captioner::serve::{self, CaptionEngine, ServeConfig};
use captioner::Captioner;
use serde_json::Value;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

/// The real engine, recording the size of every batch it is given.
struct Recording {
    inner: Captioner,
    sizes: Mutex<Vec<usize>>,
}

impl CaptionEngine for Recording {
    fn caption_bytes(&self, bytes: &[u8], beam: usize) -> captioner::Result<String> {
        self.sizes.lock().unwrap().push(1);
        CaptionEngine::caption_bytes(&self.inner, bytes, beam)
    }
    fn caption_batch(&self, images: &[&[u8]], beam: usize) -> Vec<captioner::Result<String>> {
        self.sizes.lock().unwrap().push(images.len());
        CaptionEngine::caption_batch(&self.inner, images, beam)
    }
    fn info(&self) -> Value {
        CaptionEngine::info(&self.inner)
    }
}

/// The corpus's first `n` images, as uploaded bytes.
fn uploads(n: usize) -> Vec<Vec<u8>> {
    let mut paths: Vec<_> = std::fs::read_dir(trained().data.join("Images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .take(n)
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[test]
fn a_batch_captions_each_image_as_it_is_captioned_alone() {
    let c = Captioner::load(&trained().run, &Device::Cpu).unwrap();
    let mut images = uploads(12);
    let cut = images[0][..images[0].len() / 3].to_vec();
    images.insert(5, cut);
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    for beam in [1, 3] {
        let batch = CaptionEngine::caption_batch(&c, &refs, beam);
        assert_eq!(batch.len(), refs.len());
        for (k, (bytes, got)) in refs.iter().zip(&batch).enumerate() {
            let alone = CaptionEngine::caption_bytes(&c, bytes, beam);
            match (alone, got) {
                (Ok(a), Ok(b)) => assert_eq!(&a, b, "image {k}, beam {beam}"),
                (Err(a), Err(b)) => {
                    assert_eq!(a.to_string(), b.to_string());
                    assert!(!b.is_internal(), "a bad upload is the user's fault: {b}");
                }
                (a, b) => panic!("image {k}, beam {beam}: alone {a:?}, in a batch {b:?}"),
            }
        }
    }
    let refused = CaptionEngine::caption_batch(&c, &refs[..2], 0);
    assert!(refused.iter().all(|r| r.is_err()));
}

#[test]
fn concurrent_requests_are_batched_and_answered_with_their_own_captions() {
    let images = uploads(16);
    let inner = Captioner::load(&trained().run, &Device::Cpu).unwrap();
    let want: Vec<String> = images
        .iter()
        .map(|b| CaptionEngine::caption_bytes(&inner, b, 1).unwrap())
        .collect();
    let engine = Arc::new(Recording {
        inner,
        sizes: Mutex::new(Vec::new()),
    });
    let server = serve::start(
        engine.clone(),
        ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            queue: 64,
            timeout: Duration::from_secs(60),
            max_batch: 8,
            batch_wait: Duration::from_millis(20),
            ..ServeConfig::default()
        },
    )
    .unwrap();
    let url = format!("http://{}/api/caption", server.addr());
    let start = Arc::new(Barrier::new(images.len()));
    let handles: Vec<_> = images
        .into_iter()
        .map(|bytes| {
            let (url, start) = (url.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                start.wait();
                let mut res = agent
                    .post(&url)
                    .header("Content-Type", "image/jpeg")
                    .send(&bytes[..])
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200);
                let body: Value = res.body_mut().read_json().unwrap();
                body["caption"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let got: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, want, "each answer is its own image's caption");
    let sizes = engine.sizes.lock().unwrap().clone();
    assert_eq!(sizes.iter().sum::<usize>(), 16, "{sizes:?}");
    assert!(
        sizes.iter().any(|&n| n > 1) && sizes.iter().all(|&n| n <= 8),
        "no batch of 2..=8 formed: {sizes:?}"
    );
    server.shutdown().unwrap();
}
