//! A throwaway certificate authority for TLS tests (shared by several test
//! binaries, each using part of it).
#![allow(dead_code)]

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA that signs server certificates.
pub struct TestCa {
    key: KeyPair,
    certificate: rcgen::Certificate,
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("a key pair");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Attestix test CA");
        let certificate = params.self_signed(&key).expect("a self-signed CA");
        Self { key, certificate }
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> Vec<u8> {
        self.certificate.der().to_vec()
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.certificate.pem()
    }

    /// A certificate for `names` signed by this CA and its key: (chain PEM, key PEM).
    pub fn server_pem(&self, names: &[&str]) -> (String, String) {
        let (certificate, key) = self.issue(names);
        (certificate.pem(), key.serialize_pem())
    }

    fn issue(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("a key pair");
        let params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server params");
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("a certificate signed by the CA");
        (certificate, key)
    }

    /// A rustls server configuration presenting a certificate for `names`.
    pub fn server_config(&self, names: &[&str]) -> rustls::ServerConfig {
        let (certificate, key) = self.issue(names);
        let chain = vec![CertificateDer::from(certificate.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a valid certificate and key")
    }
}
