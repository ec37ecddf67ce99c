//! A generated CA and a separate leaf (CA:FALSE, serverAuth, SAN
//! IP:127.0.0.1 and DNS:localhost) signed by it — kube's rustls client refuses
//! a self-signed CA presented as the server certificate.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// PEM of the CA (for kubeconfigs), the rustls server config, and one
/// client certificate per user.
pub struct Tls {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
    pub client_certs: Vec<ClientCert>,
}

/// A client certificate the CA issued for `user` (CN = name, O = each group,
/// extended key usage clientAuth), as the Kubernetes x509 authenticator reads
/// them.
pub struct ClientCert {
    pub user: String,
    pub der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// `users`: (name, groups) to issue client certificates for.
pub fn generate(users: &[(String, Vec<String>)]) -> anyhow::Result<Tls> {
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fake-apiserver-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().context("generating leaf key")?;
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .context("leaf params")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fake-apiserver");
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
        .context("signing leaf")?;

    let mut client_certs = Vec::new();
    for (user, groups) in users {
        let key = KeyPair::generate().context("generating client key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("client params")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user.as_str());
        for group in groups.iter().filter(|g| *g != "system:authenticated") {
            dn.push(DnType::OrganizationName, group.as_str());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing client certificate")?;
        client_certs.push(ClientCert {
            user: user.clone(),
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        });
    }

    // Client certificates are asked for and, when sent, verified against
    // the CA; a client without one authenticates with its bearer token.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_cert.der().to_vec()))
        .context("CA as client root")?;
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("client certificate verifier")?;

    let chain = vec![
        CertificateDer::from(leaf_cert.der().to_vec()),
        CertificateDer::from(ca_cert.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .context("TLS server certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca_cert.pem(),
        server_config: Arc::new(config),
        client_certs,
    })
}
