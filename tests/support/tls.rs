//! A private CA for tests: a self-signed root (written as PEM, what `storage.ca_file`
//! takes) and server certificates it issues for any name, served through rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "label-gateway test CA");
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestCa { cert, key, dir }
    }

    /// The CA's certificate as a PEM file.
    pub fn pem_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A file in the CA's folder (for unreadable or empty `ca_file` cases).
    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    /// TLS with a certificate for `name` (a host name or an IP address) issued by this CA.
    pub fn acceptor(&self, name: &str) -> tokio_rustls::TlsAcceptor {
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec![name.to_string()])
            .expect("server params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

/// `path` as a TOML/env value.
pub fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_string()
}
