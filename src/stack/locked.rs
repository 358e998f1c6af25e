//! Locked installs in a consumer (`devcache enable --locked-installs`): the lock's file
//! hosts resolved to the cache container in `/etc/hosts`, and the cache's local CA (its
//! certificate only: the key stays in the cache's volume) in the system's trust store,
//! which uv reads with `system-certs = true` (written into uv.toml by consumers.rs).
//!
//! Everything is undone by `remove`, leaving the container as it was: the lines devcache
//! added to `/etc/hosts` (each ends with a marker) are taken out, the CA file is removed,
//! and the trust bundle is given back byte for byte from the copy saved before the first
//! change. `/etc/hosts` is rewritten in place (Docker bind-mounts it: a rename over it
//! would fail or be lost).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use bollard::Docker;

use super::cache;
use super::consumers::Consumer;
use super::exec::script;
use super::names::Project;

/// What a consumer needs to send its lock's file hosts to the cache.
#[derive(Debug, Clone)]
pub struct ForConsumer {
    pub hosts: BTreeSet<String>,
    pub ca_pem: String,
    pub cache_ip: String,
}

/// The CA and the cache's address, for every consumer with locked installs.
pub struct Prepared {
    ca_pem: String,
    cache_ip: String,
    hosts: BTreeMap<String, BTreeSet<String>>,
}

impl Prepared {
    /// What `service` needs, when it has locked installs.
    pub fn for_service(&self, service: &str) -> Option<ForConsumer> {
        Some(ForConsumer {
            hosts: self.hosts.get(service)?.clone(),
            ca_pem: self.ca_pem.clone(),
            cache_ip: self.cache_ip.clone(),
        })
    }
}

/// Makes sure the cache container has a CA for every file host of `hosts` (services to
/// their hosts), and returns it with the container's address; `None` when no service
/// has locked installs. The CA is made inside the container, in its volume.
pub async fn prepare(
    docker: &Docker,
    project: &Project,
    hosts: &BTreeMap<String, BTreeSet<String>>,
) -> Result<Option<Prepared>> {
    let all: BTreeSet<&str> = hosts.values().flatten().map(String::as_str).collect();
    if all.is_empty() {
        return Ok(None);
    }
    let (container, _) = cache::running(docker, project).await?;
    let name = project.cache_container();
    if !cache::answers_tls(&container) {
        bail!(
            "{name} was made before locked installs: run `devcache up` to make it again (the volume is kept)"
        );
    }
    let cache_ip = container
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref()?.get(&project.network()))
        .and_then(|e| e.ip_address.clone())
        .filter(|ip| !ip.is_empty())
        .with_context(|| {
            format!(
                "{name} has no address on {}: run `devcache up`",
                project.network()
            )
        })?;
    let mut args = vec!["tls", "issue"];
    args.extend(all.iter().copied());
    let ca_pem = cache::run_devcache(docker, &name, &args)
        .await
        .context("cannot make the locked-installs CA in the cache container")?;
    if !ca_pem.starts_with("-----BEGIN CERTIFICATE-----") {
        bail!(
            "the cache container's devcache printed no CA certificate: run `devcache up` to update it"
        );
    }
    Ok(Some(Prepared {
        ca_pem,
        cache_ip,
        hosts: hosts.clone(),
    }))
}

/// The CA file devcache adds to the consumer's store, and the marker of its lines in
/// `/etc/hosts`; the saved bundle lives in a directory of devcache's own.
const INSTALL: &str = r#"set -e
ca="$1"; ip="$2"; shift 2
marker='# devcache locked installs'
crt=/usr/local/share/ca-certificates/devcache-locked-installs.crt
bundle=/etc/ssl/certs/ca-certificates.crt
saved=/var/lib/devcache/ca-certificates.crt.saved
if [ ! -e "$saved" ] && [ ! -e /var/lib/devcache/no-bundle ]; then
  mkdir -p /var/lib/devcache
  if [ -e "$bundle" ]; then cp -p "$bundle" "$saved"; else touch /var/lib/devcache/no-bundle; fi
fi
if command -v update-ca-certificates >/dev/null 2>&1; then
  if [ ! -e "$crt" ] || [ "$(cat "$crt")" != "$(printf '%s' "$ca")" ]; then
    mkdir -p /usr/local/share/ca-certificates
    printf '%s' "$ca" > "$crt"
    update-ca-certificates >/dev/null 2>&1
    echo trusted
  fi
elif ! grep -qF "$(printf '%s' "$ca" | sed -n 2p)" "$bundle" 2>/dev/null; then
  mkdir -p "$(dirname "$bundle")"
  if [ -e "$saved" ]; then cat "$saved" > "$bundle"; else : > "$bundle"; fi
  printf '%s' "$ca" >> "$bundle"
  echo trusted
fi
tmp=$(mktemp)
grep -vF "$marker" /etc/hosts > "$tmp" || true
for host in "$@"; do printf '%s\t%s %s\n' "$ip" "$host" "$marker" >> "$tmp"; done
if ! cmp -s "$tmp" /etc/hosts; then cat "$tmp" > /etc/hosts; echo resolved; fi
rm -f "$tmp""#;

const REMOVE: &str = r#"set -e
marker='# devcache locked installs'
crt=/usr/local/share/ca-certificates/devcache-locked-installs.crt
bundle=/etc/ssl/certs/ca-certificates.crt
saved=/var/lib/devcache/ca-certificates.crt.saved
for link in /etc/ssl/certs/*; do
  if [ -L "$link" ]; then
    case "$(readlink "$link")" in *devcache-locked-installs*) rm -f "$link"; echo removed;; esac
  fi
done
if [ -e "$crt" ]; then
  rm -f "$crt"
  if command -v update-ca-certificates >/dev/null 2>&1; then update-ca-certificates >/dev/null 2>&1; fi
  echo removed
fi
if [ -e "$saved" ]; then
  cmp -s "$saved" "$bundle" || { cat "$saved" > "$bundle"; echo removed; }
  rm -f "$saved"
fi
if [ -e /var/lib/devcache/no-bundle ]; then rm -f "$bundle" /var/lib/devcache/no-bundle; echo removed; fi
rmdir /var/lib/devcache 2>/dev/null || true
if grep -qF "$marker" /etc/hosts; then
  tmp=$(mktemp)
  grep -vF "$marker" /etc/hosts > "$tmp" || true
  cat "$tmp" > /etc/hosts
  rm -f "$tmp"
  echo removed
fi"#;

/// Puts the CA in the consumer's store and its file hosts on the cache; whether
/// anything changed.
pub async fn install(docker: &Docker, consumer: &Consumer, wanted: &ForConsumer) -> Result<bool> {
    let mut args = vec![wanted.ca_pem.as_str(), wanted.cache_ip.as_str()];
    args.extend(wanted.hosts.iter().map(String::as_str));
    let said = script(docker, &consumer.container, INSTALL, &args)
        .await
        .context("cannot set up locked installs")?;
    Ok(!said.trim().is_empty())
}

/// Takes every trace of locked installs out of a consumer; whether there was any.
pub async fn remove(docker: &Docker, consumer: &Consumer) -> Result<bool> {
    let said = script(docker, &consumer.container, REMOVE, &[])
        .await
        .context("cannot take locked installs out")?;
    Ok(said.contains("removed"))
}
