//! Assembles the daemon from checked settings: volumes, keys, the S3 service, the listener,
//! signals (SIGHUP reloads credentials and the TLS certificate, SIGTERM/SIGINT stop
//! gracefully), and the embedded development default.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::auth::{KeyRing, KeySet};
use crate::config::{RawConfig, RawVolume, Settings};
use crate::s3::S3Vol;
use crate::server::ReloadableTls;
use crate::store::Volumes;
use crate::store::volume::random_hex;

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
        crate::server::tls_acceptor(cert, key)?;
    }
    Ok((settings, keys))
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(settings: Settings, keys: KeySet) -> Result<(), String> {
    let tls = match &settings.tls {
        Some((c, k)) => Some(ReloadableTls::load(c, k)?),
        None => None,
    };
    let volumes = Arc::new(Volumes::open(settings.volumes.clone(), settings.volumes_root.clone()));
    let ring = KeyRing::new(keys, settings.strict_region.then(|| settings.region.clone()))
        .with_public(settings.public.clone());
    let s3 = S3Vol::new(volumes, ring.clone(), settings.region.clone());
    let mut b = S3ServiceBuilder::new(s3);
    b.set_auth(ring.clone());
    b.set_access(ring.clone());
    let mut cfg = S3Config::default();
    cfg.presigned_url_max_skew_time_secs = MAX_SKEW_SECS;
    b.set_config(Arc::new(StaticConfigProvider::new(Arc::new(cfg))));
    let service = b.build();

    let listener =
        TcpListener::bind(settings.listen).await.map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    spawn_reloader(ring, settings.credentials.clone(), tls.clone());
    info!(%addr, tls = tls.is_some(), "listening");
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    crate::server::run(listener, tls, service, Arc::new(settings.cors.clone()), shutdown_signal()).await;
    Ok(())
}

/// SIGHUP: reload the credentials file and the TLS certificate; a broken file is logged
/// and what was in force stays.
fn spawn_reloader(ring: KeyRing, path: Option<PathBuf>, tls: Option<ReloadableTls>) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot install the SIGHUP handler: credentials and certificate reload disabled");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Some(path) = &path {
                reload(&ring, path);
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => info!("TLS certificate reloaded"),
                    Err(e) => {
                        error!(error = %e, "TLS certificate reload failed: the previous certificate stays in force")
                    }
                }
            }
        }
    });
}

fn reload(ring: &KeyRing, path: &Path) {
    match KeySet::load(path) {
        Ok(keys) => {
            info!(keys = keys.len(), "credentials reloaded");
            ring.replace(keys);
        }
        Err(e) => error!(error = %e, "credentials reload failed: the previous keys stay in force"),
    }
}

async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
