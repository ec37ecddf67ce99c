//! The proxy's two TLS sides: the certificate it presents to clients (a leaf
//! it generates, signed by a CA the caller gives it) and the trust it places
//! in the upstream API server (the upstream's CA, nothing else).

use std::sync::Arc;

use anyhow::{Context, anyhow};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA certificate and its private key, both PEM. The key must be PKCS#8
/// (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey` and rcgen write):
/// the ring backend reads no other form.
#[derive(Clone)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

impl CaPem {
    /// A fresh self-signed CA (ECDSA P-256), for tests that have none.
    pub fn generate(common_name: &str) -> anyhow::Result<CaPem> {
        let key = KeyPair::generate().context("generating CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).context("self-signing CA")?;
        Ok(CaPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Reads both PEM files (say the testbed's `ca.crt` and `ca.key`).
    pub fn from_files(
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> anyhow::Result<CaPem> {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        Ok(CaPem {
            cert_pem: read(cert.as_ref())?,
            key_pem: read(key.as_ref())?,
        })
    }

    /// The rustls config the proxy serves with: a fresh leaf signed by this
    /// CA (SAN IP:127.0.0.1, DNS:localhost; ALPN http/1.1). Handy for a
    /// stand-in upstream in tests.
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        server_config(self)
    }
}

/// The rustls server config presenting a fresh leaf (CA:FALSE, serverAuth,
/// SAN IP:127.0.0.1 and DNS:localhost) signed by `ca`, chain leaf + CA,
/// ALPN `http/1.1` only (see the crate documentation for why not h2).
pub fn server_config(ca: &CaPem) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .context("reading the CA key (it must be a PKCS#8 PEM, \"BEGIN PRIVATE KEY\")")?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).context("reading the CA cert")?;
    let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
        .map_err(|e| anyhow!("reading the CA cert PEM: {e}"))?;

    let leaf_key = KeyPair::generate().context("generating leaf key")?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .context("leaf params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fault-proxy");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let leaf = params
        .signed_by(&leaf_key, &issuer)
        .context("signing the leaf")?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from(leaf.der().to_vec()), ca_der];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("TLS server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The rustls client config for the upstream: trusts every certificate in
/// `upstream_ca_pem` and nothing else; no client certificate; HTTP/1.1.
pub fn client_config(upstream_ca_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(upstream_ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| anyhow!("reading the upstream CA PEM: {e}"))?;
        roots.add(cert).context("adding the upstream CA")?;
        n += 1;
    }
    if n == 0 {
        return Err(anyhow!("the upstream CA PEM holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
