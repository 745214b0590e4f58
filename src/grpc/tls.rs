//! Optional TLS for the gRPC server, and the matching client settings for
//! the simulated clients in the same process.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
#[error("cannot read the TLS {what} {path}: {source}")]
pub struct TlsError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

/// Where the PEM files are, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that issued `cert`, for clients; None if it is self-signed.
    pub ca: Option<PathBuf>,
    /// The name clients expect in the certificate.
    pub domain: String,
}

impl TlsFiles {
    pub fn load(&self) -> Result<TlsSettings, TlsError> {
        let cert = read("certificate", &self.cert)?;
        let trust = match &self.ca {
            Some(ca) => read("CA certificate", ca)?,
            None => cert.clone(),
        };
        Ok(TlsSettings {
            cert,
            key: read("key", &self.key)?,
            trust,
            domain: self.domain.clone(),
        })
    }
}

/// The server's certificate chain and key (PEM), and what clients trust.
#[derive(Clone)]
pub struct TlsSettings {
    cert: Vec<u8>,
    key: Vec<u8>,
    /// The CA clients trust; the server certificate itself if self-signed.
    trust: Vec<u8>,
    /// The name clients expect in the certificate.
    domain: String,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsSettings")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError {
        what,
        path: path.to_owned(),
        source,
    })
}

/// tonic's TLS takes rustls's process-wide provider. orderdeck ships ring;
/// a build that also has aws-lc-rs (the test build does, through a test
/// dependency) has no single default, so ring is named once here.
fn use_ring() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Err: the process already chose one, which then stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl TlsSettings {
    pub fn server(&self) -> ServerTlsConfig {
        use_ring();
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key))
    }

    pub fn client(&self) -> ClientTlsConfig {
        use_ring();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.trust))
            .domain_name(self.domain.clone())
    }
}
