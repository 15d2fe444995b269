//! A real scheduler: Slurm (munged, slurmctld and slurmd on localhost, one node with 2 CPUs,
//! started by this test in a temp dir and stopped by a guard, also when the test fails) runs
//! `captioner features` as a job array of 4 shards into one cache. One task is cancelled with
//! `scancel` mid-run and resubmitted alone; it continues from its chunks. The merge then gives
//! the bytes of a one-process run. Skipped, saying so, where Slurm is not installed (.ci/run
//! installs slurm-wlm and munge; in CI a missing Slurm fails the test).

use crate::common::{self, exe, features_cmd, init_resnet18, ok};
use crate::webdriver::find_program;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// `slurmctld`, `slurmd` and `munged` (often in sbin, which a user's PATH may lack).
fn daemons() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let find = |name: &str| {
        find_program(&[name]).or_else(|| {
            ["/usr/sbin", "/usr/local/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
    };
    let found = (find("slurmctld")?, find("slurmd")?, find("munged")?);
    find_program(&["sbatch"])?;
    Some(found)
}

/// A free loopback port (free when asked: good enough for a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemons of a one-node cluster and its client configuration. Dropping it cancels the jobs
/// it submitted and stops the daemons it started (by their process ids).
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
    jobs: Vec<String>,
}

impl Cluster {
    fn start(dir: &Path, slurmctld: &Path, slurmd: &Path, munged: &Path) -> Cluster {
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .split('.')
            .next()
            .unwrap()
            .to_string();
        for d in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let key = dir.join("munge/munge.key");
        std::fs::write(
            &key,
            (0..1024)
                .map(|i| (i * 7919 % 251) as u8)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        std::fs::set_permissions(dir.join("munge"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let socket = dir.join("munge/munge.socket");
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=captest\n\
                 SlurmctldHost={host}(127.0.0.1)\n\
                 SlurmctldPort={ctld}\n\
                 SlurmdPort={slurmd_port}\n\
                 AuthType=auth/munge\n\
                 AuthInfo=socket={socket}\n\
                 CredType=cred/munge\n\
                 SlurmUser={user}\n\
                 SlurmdUser={user}\n\
                 StateSaveLocation={d}/state\n\
                 SlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\n\
                 SlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\n\
                 SlurmdLogFile={d}/log/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\n\
                 JobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\n\
                 SelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_CPU\n\
                 MpiDefault=none\n\
                 ReturnToService=2\n\
                 SchedulerType=sched/builtin\n\
                 MinJobAge=600\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
                 PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                ctld = free_port(),
                slurmd_port = free_port(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            conf: conf.clone(),
            daemons: Vec::new(),
            jobs: Vec::new(),
        };
        let log = |name: &str| std::fs::File::create(dir.join("log").join(name)).unwrap();
        let spawn = |cmd: &mut Command, name: &str| {
            cmd.stdout(log(&format!("{name}.out")))
                .stderr(log(&format!("{name}.err")))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
        };
        let munge = spawn(
            Command::new(munged)
                .args(["--foreground", "--force"])
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={d}/munge/munged.pid"))
                .arg(format!("--log-file={d}/log/munged.log"))
                .arg(format!("--seed-file={d}/munge/munged.seed")),
            "munged",
        );
        cluster.daemons.push(("munged", munge));
        cluster.wait_for(|| socket.exists(), "munged's socket");
        let ctld = spawn(
            Command::new(slurmctld)
                .arg("-D")
                .arg("-i")
                .arg("-f")
                .arg(&conf),
            "slurmctld",
        );
        cluster.daemons.push(("slurmctld", ctld));
        let node = spawn(
            Command::new(slurmd).arg("-D").arg("-f").arg(&conf),
            "slurmd",
        );
        cluster.daemons.push(("slurmd", node));
        cluster.wait_for(
            || {
                let out = cluster.cmd("sinfo").args(["-h", "-o", "%t"]).output();
                out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
            },
            "the node to be idle",
        );
        cluster
    }

    /// A Slurm client command for this cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf).current_dir(&self.dir);
        c
    }

    /// Polls `ready` for up to 60 s; panics with the daemons' logs otherwise.
    fn wait_for(&self, mut ready: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready() {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join("log")) {
            for e in entries.flatten() {
                let body = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = body.lines().rev().take(15).collect();
                all.push_str(&format!("== {}\n", e.path().display()));
                for l in tail.into_iter().rev() {
                    all.push_str(l);
                    all.push('\n');
                }
            }
        }
        all
    }

    /// `scontrol show job ID`'s JobState.
    fn state(&self, job: &str) -> String {
        let out = self
            .cmd("scontrol")
            .args(["show", "job", job])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .unwrap_or("UNKNOWN")
            .to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.jobs.is_empty() {
            let _ = self.cmd("scancel").args(&self.jobs).output();
        }
        // SIGTERM first (each daemon shuts down cleanly), then SIGKILL for any still running.
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child) in self.daemons.iter_mut().rev() {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_slurm_job_array_with_a_cancelled_and_resubmitted_task_merges_to_one_process() {
    let started = Instant::now();
    let Some((slurmctld, slurmd, munged)) = daemons() else {
        if std::env::var_os("CI").is_some() {
            panic!("Slurm is required in CI (.ci/run installs slurm-wlm and munge)");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED slurm test: slurmctld, slurmd, munged or sbatch not found \
             (apt-get install slurm-wlm munge)"
        );
        return;
    };
    let dir = tempfile::Builder::new().prefix("slurm").tempdir().unwrap();
    let data = dir.path().join("data");
    common::synth(&data, 200);
    let bb = dir.path().join("r18.safetensors");
    init_resnet18(&bb, Some(11));
    let flags = [
        "--image-size",
        "160",
        "--batch-size",
        "4",
        "--chunk-images",
        "4",
    ];
    let clean = dir.path().join("clean");
    ok(features_cmd(&data, &bb, &clean, &flags).output().unwrap());

    let mut cluster = Cluster::start(&dir.path().join("cluster"), &slurmctld, &slurmd, &munged);
    let cache = dir.path().join("cache");
    let job = dir.path().join("features.sh");
    std::fs::write(
        &job,
        format!(
            "#!/bin/sh\n\
             # Shard SLURM_ARRAY_TASK_ID of 4: --shards keeps the number when a task is resubmitted alone.\n\
             exec {exe} features --data {data} --backbone {bb} --cache {cache} --arch resnet18 \
             --no-progress --shards 4 {flags}\n",
            exe = exe().get_program().to_string_lossy(),
            data = data.display(),
            bb = bb.display(),
            cache = cache.display(),
            flags = flags.join(" "),
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let submitted = cluster
        .cmd("sbatch")
        .args(["--parsable", "--array=0-3", "--job-name=features"])
        .arg(format!("--output={}/%a.txt", out_dir.display()))
        .arg(&job)
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{}", text(&submitted));
    let id = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    cluster.jobs.push(id.clone());

    // Cancel task 1 once it has committed a chunk, while it is still running.
    let task1 = format!("{id}_1");
    let chunks_of_1 = || -> usize {
        std::fs::read_dir(cache.join("chunks"))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.starts_with("s0001of0004-") && n.ends_with(".json")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    cluster.wait_for(|| chunks_of_1() >= 1, "task 1's first chunk");
    let cancel = cluster.cmd("scancel").arg(&task1).output().unwrap();
    assert!(cancel.status.success(), "{}", text(&cancel));
    cluster.wait_for(
        || {
            let q = cluster
                .cmd("squeue")
                .args(["-h", "-j", &id])
                .output()
                .unwrap();
            q.status.success() && String::from_utf8_lossy(&q.stdout).trim().is_empty()
        },
        "the array to finish",
    );
    assert_eq!(cluster.state(&task1), "CANCELLED", "{}", cluster.logs());
    let done_before = chunks_of_1();
    let out1 = std::fs::read_to_string(out_dir.join("1.txt")).unwrap_or_default();
    assert!(
        !out1.contains("computed"),
        "task 1 finished before it was cancelled: {out1}"
    );
    for i in [0, 2, 3] {
        assert_eq!(cluster.state(&format!("{id}_{i}")), "COMPLETED");
        let out = std::fs::read_to_string(out_dir.join(format!("{i}.txt"))).unwrap();
        assert!(
            out.contains(&format!("shard {i}/4 (from Slurm job array")),
            "{out}"
        );
    }

    // The lost task resubmitted alone continues from its chunks.
    let retry = cluster
        .cmd("sbatch")
        .args(["--wait", "--array=1", "--job-name=features-retry"])
        .arg(format!("--output={}/retry-%a.txt", out_dir.display()))
        .arg(&job)
        .output()
        .unwrap();
    assert!(
        retry.status.success(),
        "{}\n{}",
        text(&retry),
        cluster.logs()
    );
    let out = std::fs::read_to_string(out_dir.join("retry-1.txt")).unwrap();
    assert!(out.contains("shard 1/4 (from Slurm job array"), "{out}");
    let reused: usize = out
        .split(" reused")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reused count in {out}"));
    // At least the chunks committed before the cancel (4 images each) are not computed again.
    assert!(reused >= 4 * done_before, "the retry started over: {out}");
    assert!(!cache.join("features.safetensors").exists());

    // The merge (an unsharded run), then the bytes of the one-process run.
    let merged = ok(features_cmd(&data, &bb, &cache, &flags).output().unwrap());
    assert!(merged.contains("200 reused, 0 computed"), "{merged}");
    for f in ["features.safetensors", "images.json", "cache.json"] {
        assert!(
            std::fs::read(clean.join(f)).unwrap() == std::fs::read(cache.join(f)).unwrap(),
            "{f} after the Slurm array differs from one process's"
        );
    }
    drop(cluster);
    let _ = writeln!(
        std::io::stderr(),
        "slurm test: {:.1} s wall",
        started.elapsed().as_secs_f64()
    );
}
