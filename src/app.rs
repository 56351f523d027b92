//! Assembles the daemon from checked settings: volumes, keys, metrics, the S3 service, the
//! S3 and admin listeners, readiness for systemd (`sd_notify`), signals (SIGHUP reloads
//! credentials and the TLS certificate, SIGTERM/SIGINT stop gracefully), and the embedded
//! development default.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, info_span, warn};

use crate::admin::Admin;
use crate::auth::{KeyRing, KeySet};
use crate::config::{RawConfig, RawVolume, Settings};
use crate::guard::{AuthRules, Guard};
use crate::keywatch::KeyWatch;
use crate::metrics::Metrics;
use crate::notify::{State, notify};
use crate::s3::S3Vol;
use crate::server::{ReloadableTls, ServeOptions};
use crate::store::sweep::{self, SweepReport};
use crate::store::volume::VolumeState;
use crate::store::volume::random_hex;
use crate::store::{self, Volumes};

/// Clock skew accepted on signed requests: one hour each way (SPEC.md; S3 allows 15 min).
pub const MAX_SKEW_SECS: u32 = 3600;
/// Where the embedded default keeps its demo volume and development key (under the cwd).
pub const DEMO_VOLUME: &str = "demo-volume";
pub const DEV_DIR: &str = ".s3vol-dev";

/// Fills in the embedded default when nothing names a volume or credentials: volume `demo`
/// at `./demo-volume` and a development key kept in `./.s3vol-dev/credentials.toml`
/// (created once, mode 0600, printed on stderr at every start).
pub fn embedded_default(raw: &mut RawConfig) -> Result<(), String> {
    std::fs::create_dir_all(DEMO_VOLUME).map_err(|e| format!("cannot create ./{DEMO_VOLUME}: {e}"))?;
    std::fs::create_dir_all(DEV_DIR).map_err(|e| format!("cannot create ./{DEV_DIR}: {e}"))?;
    let creds = PathBuf::from(DEV_DIR).join("credentials.toml");
    if !creds.exists() {
        let ak = format!("S3VOLDEV{}", random_hex(6).to_ascii_uppercase());
        let sk = random_hex(20);
        let text = format!(
            "# Development key made by `s3vol serve` with no config. Not for production.\n[[key]]\nname = \"dev\"\naccess_key = \"{ak}\"\nsecret_key = \"{sk}\"\nvolumes = [\"*\"]\npermissions = [\"read\", \"write\", \"delete\", \"admin\"]\n"
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&creds)
            .map_err(|e| format!("cannot write {}: {e}", creds.display()))?;
        f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let keys = KeySet::load(&creds)?;
    let text = std::fs::read_to_string(&creds).map_err(|e| e.to_string())?;
    let get = |field: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("{field} = \""))).map(|v| v.trim_end_matches('"').to_owned())
    };
    if keys.is_empty() {
        return Err(format!("{} holds no key", creds.display()));
    }
    eprintln!("embedded default: volume \"demo\" at ./{DEMO_VOLUME}");
    eprintln!("dev access key: {}", get("access_key").unwrap_or_default());
    eprintln!("dev secret key: {}", get("secret_key").unwrap_or_default());
    raw.volume = vec![RawVolume { name: "demo".into(), path: PathBuf::from(DEMO_VOLUME), ..Default::default() }];
    raw.credentials = Some(creds);
    Ok(())
}

/// Everything `check-config` verifies: the settings and the credentials file.
pub fn check(raw: &RawConfig) -> Result<(Settings, KeySet), String> {
    let settings = raw.validate()?;
    let creds = settings.credentials.as_deref().expect("validate requires credentials");
    let keys = KeySet::load(creds)?;
    if let Some((cert, key)) = &settings.tls {
        crate::server::tls_acceptor(cert, key, settings.limits.http2)?;
    }
    Ok((settings, keys))
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// Order (what `Type=notify` relies on): every volume is opened and checked, both
/// listeners are bound, `listening on ADDR` (and `admin on ADDR`) are printed, then
/// `READY=1` is sent. SIGHUP sends `RELOADING=1`, reloads, then `READY=1`. SIGTERM or
/// SIGINT sends `STOPPING=1` and starts the graceful shutdown.
pub async fn serve(settings: Settings, keys: KeySet) -> Result<(), String> {
    let tls = match &settings.tls {
        Some((c, k)) => Some(ReloadableTls::load(c, k, settings.limits.http2)?),
        None => None,
    };
    let volumes = open_volumes(&settings).await?;
    let metrics = Arc::new(Metrics::new());
    spawn_sweeper(volumes.clone(), settings.multipart_max_age_secs, settings.limits.volume_timeout);
    spawn_liveness_checker(volumes.clone(), settings.limits.volume_timeout);
    let key_count = keys.len();
    let ring = KeyRing::new(keys, settings.strict_region.then(|| settings.region.clone()))
        .with_sigv2(settings.sigv2)
        .with_public(settings.public.clone());
    let (service, opts) = build_service(&settings, volumes.clone(), &ring, metrics.clone());

    let listener =
        TcpListener::bind(settings.listen).await.map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let admin = match settings.admin_listen {
        Some(a) => {
            let l = TcpListener::bind(a).await.map_err(|e| format!("cannot listen on {a} (admin_listen): {e}"))?;
            let bound = l.local_addr().map_err(|e| e.to_string())?;
            Some((l, bound))
        }
        None => None,
    };
    // The credentials file is reloaded when it changes (crate::keywatch) and on SIGHUP.
    let watch = settings.credentials.clone().map(|path| {
        let every = Duration::from_secs(settings.credentials_check_secs);
        KeyWatch::start(ring.clone(), path, key_count, metrics.clone(), every)
    });
    spawn_reloader(watch.clone(), tls.clone());
    info!(%addr, tls = tls.is_some(), "listening");
    println!("listening on {addr}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some((l, bound)) = admin {
        info!(addr = %bound, "admin listening");
        println!("admin on {bound}");
        let state = Admin { volumes, metrics: metrics.clone(), busy: Arc::default() };
        let mut rx = stop_rx.clone();
        tokio::spawn(crate::admin::run(l, state, async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }));
    }
    let _ = std::io::stdout().flush();
    notify(State::Ready);
    let shutdown = async move {
        shutdown_signal().await;
        notify(State::Stopping);
        let _ = stop_tx.send(true);
    };
    crate::server::run(listener, tls, service, opts, shutdown).await;
    drop(stop_rx);
    Ok(())
}

/// The S3 service for `settings` over `volumes`, authenticated and authorised by `ring`,
/// and the options [`crate::server::run`] serves it with: what [`serve`] and
/// [`serve_in_process`] share.
fn build_service(
    settings: &Settings,
    volumes: Arc<Volumes>,
    ring: &KeyRing,
    metrics: Arc<Metrics>,
) -> (s3s::service::S3Service, ServeOptions) {
    let s3 = S3Vol::new(volumes.clone(), ring.clone(), settings.region.clone());
    let cors = Arc::new(crate::s3::bucket_cors::LiveCors::new(settings.cors.clone(), volumes));
    let mut b = S3ServiceBuilder::new(s3.clone());
    b.set_auth(ring.clone());
    b.set_access(ring.clone());
    // Signed Complete bodies listing the part checksums s3s cannot parse (s3::complete_route).
    b.set_route(crate::s3::complete_route::CompleteRoute::new(s3, ring.clone()));
    // One resolver decides the bucket for routing, CORS and the log line alike.
    let buckets = crate::s3::host::BucketResolver::new(&settings.domains);
    if let Some(hosts) = buckets.s3_host() {
        b.set_host(hosts);
    }
    let l = &settings.limits;
    let guard = Arc::new(Guard::new(
        AuthRules { sigv2: settings.sigv2, max_skew_secs: i64::from(MAX_SKEW_SECS) },
        l.max_chunk_size,
        l.max_form_upload_size,
        l.max_form_uploads,
    ));
    let mut cfg = guard.s3s_config(S3Config::default());
    cfg.presigned_url_max_skew_time_secs = MAX_SKEW_SECS;
    cfg.xml_max_body_size = crate::server::XML_MAX_BODY as usize;
    b.set_config(Arc::new(StaticConfigProvider::new(Arc::new(cfg))));
    let opts = ServeOptions { metrics, limits: settings.limits, cors, guard, buckets };
    (b.build(), opts)
}

/// Opens every configured volume (mkdir of internal directories, probes, statvfs: file-system
/// work) on the blocking pool.
async fn open_volumes(settings: &Settings) -> Result<Arc<Volumes>, String> {
    let (explicit, root) = (settings.volumes.clone(), settings.volumes_root.clone());
    store::spawn_blocking(info_span!("open"), move || Arc::new(Volumes::open(explicit, root)))
        .await
        .map_err(|e| format!("opening the volumes: {e}"))
}

/// An S3 listener served in-process by [`serve_in_process`]; dropping it (or
/// [`InProcess::stop`]) shuts the server down.
pub struct InProcess {
    /// The bound address (`127.0.0.1` and the port the kernel chose).
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl InProcess {
    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Serves the S3 API of `settings` with `keys` in this process on `127.0.0.1:0` (the
/// configured `listen` is ignored) without the admin listener, the background tasks,
/// signals or sd_notify: the real service, guard and store for fast integration tests
/// that sign real requests (`tests/s3_inprocess.rs`). Must run inside a tokio runtime.
///
/// Errors: binding the listener, or the task opening the volumes failed (a volume that
/// cannot be opened is not an error: it answers 503, as in [`serve`]).
pub async fn serve_in_process(settings: Settings, keys: KeySet) -> Result<InProcess, String> {
    let volumes = open_volumes(&settings).await?;
    let ring = KeyRing::new(keys, settings.strict_region.then(|| settings.region.clone()))
        .with_sigv2(settings.sigv2)
        .with_public(settings.public.clone());
    let (service, opts) = build_service(&settings, volumes, &ring, Arc::new(Metrics::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::server::run(listener, None, service, opts, async move {
        let _ = rx.await;
    }));
    Ok(InProcess { addr, stop: Some(tx), task: Some(task) })
}

/// How often the sweep runs: a quarter of the upload age, between 1 second and 1 hour.
pub fn sweep_interval(max_age_secs: u64) -> Duration {
    Duration::from_secs((max_age_secs / 4).clamp(1, 3600))
}

/// The background sweep (SPEC.md "Multipart uploads"): at start and then every
/// [`sweep_interval`], on every online writable volume, removes idle uploads, old
/// completion records and crash leftovers in the temp directory (`store::sweep`).
fn spawn_sweeper(volumes: Arc<Volumes>, max_age_secs: u64, deadline: Duration) {
    let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(sweep_interval(max_age_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // `all()` rescans `volumes_root`: file-system work, so on the blocking pool.
            let list = {
                let volumes = volumes.clone();
                match store::spawn_blocking(info_span!("sweep"), move || volumes.all()).await {
                    Ok(list) => list,
                    Err(_) => continue,
                }
            };
            for (name, state) in list {
                let VolumeState::Online(vol) = state else { continue };
                // A stalled volume is skipped: its sweep would only hang another thread.
                if vol.read_only || !vol.is_servable() {
                    continue;
                }
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let span = info_span!("sweep", volume = %name);
                let task = store::spawn_blocking(span, move || sweep::sweep(&vol, max_age, now));
                // A sweep that hangs (the file system stopped answering) holds up the other
                // volumes' sweeps for at most `deadline`; it goes on in the background.
                let Ok(done) = tokio::time::timeout(deadline, task).await else {
                    warn!(volume = %name, "sweep did not finish in time (a hung volume?)");
                    continue;
                };
                match done {
                    Ok(Ok(r)) if r != SweepReport::default() => {
                        info!(volume = %name, uploads = r.uploads, records = r.records, temps = r.temps, dirs = r.dirs, "swept");
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(volume = %name, error = %e, "sweep failed"),
                    Err(e) => warn!(volume = %name, error = %e, "sweep task failed"),
                }
            }
        }
    });
}

/// How often each volume's liveness is checked ([`Volumes::check`]).
const LIVENESS_EVERY: Duration = Duration::from_secs(2);
/// Shortest gap between two rounds of checks woken by request errors.
const LIVENESS_MIN_GAP: Duration = Duration::from_millis(250);

/// The liveness check of every volume, every [`LIVENESS_EVERY`] and whenever a request
/// meets an error that may mean its volume changed ([`crate::store::volume::RECHECK`]):
/// a volume whose path leads elsewhere, that was remounted read-only or writable, whose
/// mount appeared or went away, or whose internal directory was renamed, answers 503 or is
/// opened again within seconds, without a restart ([`Volumes::check`]).
///
/// Each check runs on the blocking pool, one task per volume and at most one at a time per
/// volume, so a hung volume stalls only its own; a check that has not returned after
/// `deadline` marks its volume stalled (503 at once) until one returns.
fn spawn_liveness_checker(volumes: Arc<Volumes>, deadline: Duration) {
    use crate::store::volume::{RECHECK, Transition};
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LIVENESS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let busy: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>> = Arc::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = RECHECK.notified() => tokio::time::sleep(LIVENESS_MIN_GAP).await,
            }
            for name in volumes.names() {
                if let Some(since) = busy.lock().unwrap().get(&name) {
                    // The last check of this volume has not returned: its file system hangs.
                    if since.elapsed() > deadline && volumes.mark_stalled(&name) {
                        warn!(volume = %name, timeout = ?deadline, "the volume's file system does not answer: it answers 503 until it does");
                    }
                    continue;
                }
                busy.lock().unwrap().insert(name.clone(), std::time::Instant::now());
                let (busy, volumes) = (busy.clone(), volumes.clone());
                store::spawn_blocking(info_span!("liveness", volume = %name), move || {
                    match volumes.check(&name) {
                        Some(Transition::Online { read_only }) => {
                            info!(volume = %name, read_only, "the volume is served (again)");
                        }
                        Some(Transition::Unavailable(reason)) => {
                            warn!(volume = %name, %reason, "the volume answers 503 ServiceUnavailable until it is back");
                        }
                        None => {}
                    }
                    busy.lock().unwrap().remove(&name);
                });
            }
        }
    });
}

/// SIGHUP: reload the credentials file and the TLS certificate; a broken file is logged
/// and what was in force stays.
fn spawn_reloader(watch: Option<KeyWatch>, tls: Option<ReloadableTls>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler: credentials and certificate reload disabled");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            notify(State::Reloading);
            // Reading the credentials file and the certificate is file-system work: on the
            // blocking pool, one reload at a time (the next SIGHUP waits for this one).
            let (watch, tls) = (watch.clone(), tls.clone());
            let _ = store::spawn_blocking(info_span!("reload"), move || {
                match &watch {
                    Some(w) => w.reload_now(),
                    None => info!("SIGHUP: no credentials file to reload"),
                }
                if let Some(tls) = &tls {
                    match tls.reload() {
                        Ok(()) => info!("TLS certificate reloaded"),
                        Err(e) => {
                            error!(error = %e, "TLS certificate reload failed: the previous certificate stays in force")
                        }
                    }
                }
            })
            .await;
            notify(State::Ready);
        }
    });
}

async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
