//! The testbed's own certificates: a CA, a serving leaf for kube-apiserver
//! (CA:FALSE, serverAuth, SAN IP:127.0.0.1 and DNS:localhost — kube's rustls
//! client refuses a self-signed CA as the server certificate), and the
//! ServiceAccount token signing key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// Paths of the PEM files written by [`generate`].
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (trust anchor for every client of the apiserver).
    pub ca_cert: PathBuf,
    /// The CA private key (a fault proxy may sign its own leaf with it).
    pub ca_key: PathBuf,
    /// kube-apiserver's serving certificate, signed by the CA.
    pub serving_cert: PathBuf,
    /// Its key.
    pub serving_key: PathBuf,
    /// ECDSA P-256 key signing ServiceAccount tokens (PKCS#8).
    pub sa_key: PathBuf,
    /// Its public half (verifying them).
    pub sa_pub: PathBuf,
    /// The CA certificate as PEM text.
    pub ca_pem: String,
}

/// Generates the CA, the serving leaf and the ServiceAccount key into `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<Pki> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "testbed-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().context("generating serving key")?;
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .context("serving cert params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    leaf_params.distinguished_name = dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params
        .signed_by(&leaf_key, &issuer)
        .context("signing serving cert")?;

    let sa_key = KeyPair::generate().context("generating ServiceAccount signing key")?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        ca_key: dir.join("ca.key"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
        ca_pem: ca_cert.pem(),
    };
    write(&pki.ca_cert, &pki.ca_pem)?;
    write(&pki.ca_key, &ca_key_pem)?;
    // The chain: leaf first, then the CA (clients that only know the CA
    // still verify).
    write(
        &pki.serving_cert,
        &format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
    )?;
    write(&pki.serving_key, &leaf_key.serialize_pem())?;
    write(&pki.sa_key, &sa_key.serialize_pem())?;
    write(&pki.sa_pub, &sa_key.public_key_pem())?;
    Ok(pki)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
