//! rustls (ring) server configuration from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::startup::StartupError;

pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, StartupError> {
    let err = |what: &str, e: &dyn std::fmt::Display| StartupError::Tls(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(&cert.display().to_string(), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&cert.display().to_string(), &e))?;
    if certs.is_empty() {
        return Err(StartupError::Tls(format!("{}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err(&key.display().to_string(), &e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocol versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err("certificate and key", &e))
}
