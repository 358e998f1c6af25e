//! The local certificate authority of locked installs: `uv sync --frozen` fetches every
//! file from the host its lock names, so a consumer that opted in resolves that host to
//! the cache, and the cache answers TLS for it with a certificate of its own CA.
//!
//! The CA is made in the data directory (`tls/`, keys readable by their owner only) and
//! never leaves it: consumers are given its certificate alone. It is name-constrained
//! (X.509 nameConstraints) to the file hosts it was made for, and excludes every IP
//! address, so even a stolen key vouches for nothing else; a client that checks name
//! constraints (rustls, OpenSSL, Go, browsers) refuses anything else it signs. Another
//! set of hosts makes a new CA, since the constraints are part of the CA's certificate.
//!
//! This module owns making, reading and presenting the certificates; the server asks it
//! for a certificate at each handshake, and answers only the names the CA was made for.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::local_file::write_atomically;

/// The directory of the data directory that holds the CA and the server's certificate.
pub const TLS_DIR: &str = "tls";
const HOSTS: &str = "hosts";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";

/// The CA's common name; consumers' stores show it.
pub const CA_NAME: &str = "devcache locked installs (local)";

/// Checks and normalises file host names: DNS names only, lowercase, no duplicates.
pub fn host_names(raw: &[String]) -> Result<Vec<String>> {
    let mut hosts = Vec::new();
    for host in raw {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.parse::<std::net::IpAddr>().is_err()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && host.contains('.');
        if !valid {
            bail!(
                "{host:?} is not a file host name devcache can serve: give the DNS name in the lock's file URLs, like files.example.org"
            );
        }
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        bail!("no file host given: name the host of the lock's file URLs");
    }
    hosts.sort();
    Ok(hosts)
}

/// The CA and the server's certificate, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub hosts: Vec<String>,
    pub ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// The CA for `hosts` in `data_dir/tls/`: the one there when it was made for exactly
/// these hosts, else a new CA and server certificate (the old ones are replaced).
/// The second value says whether they were made now.
pub fn issue(data_dir: &Path, hosts: &[String]) -> Result<(Issued, bool)> {
    let hosts = host_names(hosts)?;
    // One that cannot be read (a file of it removed) is made again.
    if let Ok(Some(existing)) = load(data_dir)
        && existing.hosts == hosts
    {
        return Ok((existing, false));
    }
    let issued = make(&hosts).context("cannot make the locked-installs CA")?;
    let dir = data_dir.join(TLS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    set_mode(&dir, 0o700)?;
    // The host list last: until it is written, a reader sees the old set or none.
    let _ = std::fs::remove_file(dir.join(HOSTS));
    write_atomically(&dir.join(CA_KEY), issued.ca_key_pem.as_bytes(), 0o600)?;
    write_atomically(&dir.join(CA_CERT), issued.issued.ca_pem.as_bytes(), 0o644)?;
    write_atomically(&dir.join(KEY), issued.issued.key_pem.as_bytes(), 0o600)?;
    write_atomically(&dir.join(CERT), issued.issued.cert_pem.as_bytes(), 0o644)?;
    write_atomically(
        &dir.join(HOSTS),
        format!("{}\n", hosts.join("\n")).as_bytes(),
        0o644,
    )?;
    Ok((issued.issued, true))
}

/// The CA and certificate in `data_dir/tls/`, if any were made.
pub fn load(data_dir: &Path) -> Result<Option<Issued>> {
    let dir = data_dir.join(TLS_DIR);
    let hosts = match std::fs::read_to_string(dir.join(HOSTS)) {
        Ok(text) => text.lines().map(str::to_string).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Some(Issued {
        hosts,
        ca_pem: read(CA_CERT)?,
        cert_pem: read(CERT)?,
        key_pem: read(KEY)?,
    }))
}

/// Removes the CA and the certificate; `false` when there were none.
pub fn remove(data_dir: &Path) -> Result<bool> {
    let dir = data_dir.join(TLS_DIR);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// `devcache tls issue`: the CA's certificate on stdout, what was done on stderr.
pub fn issue_command(data_dir: &Path, hosts: &[String]) -> Result<()> {
    let (issued, made) = issue(data_dir, hosts)?;
    let hosts = issued.hosts.join(", ");
    if made {
        eprintln!(
            "made a new CA for {hosts} in {}",
            data_dir.join(TLS_DIR).display()
        );
    } else {
        eprintln!("the CA for {hosts} is already made");
    }
    print!("{}", issued.ca_pem);
    Ok(())
}

/// `devcache tls remove`.
pub fn remove_command(data_dir: &Path) -> Result<()> {
    let dir = data_dir.join(TLS_DIR);
    if remove(data_dir)? {
        println!("removed {}", dir.display());
    } else {
        println!("there was no {}", dir.display());
    }
    Ok(())
}

struct Made {
    issued: Issued,
    ca_key_pem: String,
}

/// The CA's certificate parameters: a CA that may sign server certificates only (no
/// intermediate CAs), for `hosts` and their subdomains, never for an IP address.
fn ca_params(hosts: &[String]) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: hosts
            .iter()
            .map(|h| GeneralSubtree::DnsName(h.clone()))
            .collect(),
        excluded_subtrees: vec![
            GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])),
        ],
    });
    Ok(params)
}

fn make(hosts: &[String]) -> Result<Made> {
    let ca_key = KeyPair::generate()?;
    let ca_params = ca_params(hosts)?;
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))?;
    Ok(Made {
        issued: Issued {
            hosts: hosts.to_vec(),
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        ca_key_pem: ca_key.serialize_pem(),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the permissions of {}", path.display()))
}

/// The server's side of TLS: the certificate in `data_dir/tls/`, read again whenever it
/// changes (`devcache tls issue` runs beside the server), presented only to clients that
/// ask for one of its hosts by SNI.
#[derive(Debug)]
pub struct Presenter {
    dir: PathBuf,
    current: Mutex<Option<Presented>>,
}

#[derive(Debug, Clone)]
struct Presented {
    modified: SystemTime,
    hosts: Vec<String>,
    key: Arc<CertifiedKey>,
}

impl Presenter {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join(TLS_DIR),
            current: Mutex::new(None),
        }
    }

    /// The rustls configuration that asks this presenter at each handshake.
    pub fn server_config(self: Arc<Self>) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// The certificate for `name`, reading the directory again when its host list changed.
    fn for_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let modified = std::fs::metadata(self.dir.join(HOSTS))
            .and_then(|m| m.modified())
            .ok()?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|c| c.modified != modified) {
            match self.read(modified) {
                Ok(presented) => *current = Some(presented),
                Err(e) => {
                    tracing::warn!("cannot read the locked-installs certificate: {e:#}");
                    return None;
                }
            }
        }
        let presented = current.as_ref()?;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        presented
            .hosts
            .contains(&name)
            .then(|| presented.key.clone())
    }

    fn read(&self, modified: SystemTime) -> Result<Presented> {
        let data_dir = self.dir.parent().unwrap_or(Path::new("."));
        let issued = load(data_dir)?.context("the certificate was removed")?;
        let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("cert.pem does not parse")?;
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .context("key.pem does not parse")?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .context("key.pem is not a key rustls can sign with")?;
        Ok(Presented {
            modified,
            hosts: issued.hosts,
            key: Arc::new(CertifiedKey::new(certs, signing)),
        })
    }
}

impl ResolvesServerCert for Presenter {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        let key = self.for_name(name);
        if key.is_none() {
            tracing::info!("TLS refused for {name}: not a file host this cache serves");
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_dns_names_only() {
        let hosts = host_names(&["Files.Example.org.".into(), "files.example.org".into()]);
        assert_eq!(hosts.unwrap(), vec!["files.example.org"]);
        for bad in [
            "10.0.0.1",
            "::1",
            "no_underscore.example",
            "localhost",
            "a..b",
            "",
        ] {
            assert!(host_names(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ca_is_kept_for_the_same_hosts_and_made_again_for_others() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["files.example.org".to_string()];
        let (first, made) = issue(dir.path(), &hosts).unwrap();
        assert!(made);
        let (again, made) = issue(dir.path(), &hosts).unwrap();
        assert!(!made);
        assert_eq!(first.ca_pem, again.ca_pem);
        let (other, made) = issue(dir.path(), &["other.example.org".to_string()]).unwrap();
        assert!(made);
        assert_ne!(first.ca_pem, other.ca_pem);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
