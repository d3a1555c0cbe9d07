//! TLS for the `tls` and `wss` channels: client and server configurations on rustls (ring
//! provider), PEM loading, and a GOST-like self-signed server certificate.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
/// Certificates and keys in DER, as rustls takes them.
pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::{PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use futures_rustls::{TlsAcceptor, TlsConnector};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {e}"))
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<Identity> {
        let certs = load_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls_err(format!("key file {}: {e}", key.display())))?;
        Ok(Identity { certs, key })
    }

    /// A fresh self-signed certificate like the one GOST generates when a TLS listener has no
    /// certificate: ECDSA P-256, valid one year from now, for server and client use, its
    /// common name also its DNS name. GOST derives the organisation and name from a device id
    /// (to look less like GOST); this one is organisation `GOST`, name `gost.run`.
    pub fn self_signed() -> io::Result<Identity> {
        Self::self_signed_for("GOST", "gost.run")
    }

    /// A fresh self-signed certificate for organisation `org` and common (and DNS) name `cn`.
    pub fn self_signed_for(org: &str, cn: &str) -> io::Result<Identity> {
        let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).map_err(tls_err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let now = std::time::SystemTime::now();
        params.not_before = now.into();
        params.not_after = (now + std::time::Duration::from_secs(365 * 24 * 3600)).into();
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let key = rcgen::KeyPair::generate().map_err(tls_err)?;
        let cert = params.self_signed(&key).map_err(tls_err)?;
        Ok(Identity {
            certs: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// Every certificate of a PEM file.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(format!("certificate file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

fn roots(certs: &[CertificateDer<'static>]) -> io::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c.clone()).map_err(tls_err)?;
    }
    Ok(store)
}

/// Client side of a TLS channel (GOST's dialer `tls` object).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// `secure`: verify the server's certificate and name (GOST default: false).
    pub secure: bool,
    /// `caFile`: trust anchors. With `secure`, the chain and the name are checked against them;
    /// without `secure`, only the chain is (GOST's manual `VerifyConnection`); with neither,
    /// any certificate is accepted. `secure` without a CA uses the system's roots.
    pub ca: Vec<CertificateDer<'static>>,
    /// `certFile` + `keyFile`: a client certificate, for servers that require one.
    pub identity: Option<Identity>,
}

impl ClientTls {
    /// The rustls configuration, with `alpn` protocols offered (may be empty).
    pub fn config(&self, alpn: &[&[u8]]) -> io::Result<Arc<rustls::ClientConfig>> {
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = if self.secure {
            let store = if self.ca.is_empty() {
                let mut store = RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = store.add(c);
                }
                if store.is_empty() {
                    return Err(tls_err(
                        "secure=true without caFile, and no system root certificate was found",
                    ));
                }
                store
            } else {
                roots(&self.ca)?
            };
            builder.with_root_certificates(store)
        } else if !self.ca.is_empty() {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(&self.ca)?), provider)
                    .build()
                    .map_err(tls_err)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        };
        let mut config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
                .map_err(tls_err)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Server side of a TLS channel (GOST's listener `tls` object).
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server's certificate (`certFile`/`keyFile`, or [`Identity::self_signed`]).
    pub identity: Identity,
    /// `caFile`: when set, clients must present a certificate issued by one of these (mTLS).
    pub client_ca: Vec<CertificateDer<'static>>,
}

impl ServerTls {
    /// The rustls configuration, with `alpn` protocols accepted (may be empty).
    pub fn config(&self, alpn: &[&[u8]]) -> io::Result<Arc<rustls::ServerConfig>> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = if self.client_ca.is_empty() {
            builder.with_no_client_auth()
        } else {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(&self.client_ca)?),
                provider,
            )
            .build()
            .map_err(tls_err)?;
            builder.with_client_cert_verifier(verifier)
        };
        let mut config = builder
            .with_single_cert(self.identity.certs.clone(), self.identity.key.clone_key())
            .map_err(tls_err)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// The name to present (SNI) and, when verifying, to check the certificate against.
pub fn server_name(name: &str) -> io::Result<ServerName<'static>> {
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(name.to_string())
        .map_err(|e| tls_err(format!("server name {name:?}: {e}")))
}

/// Checks the server's chain against the CAs but not its name (GOST: `caFile` without
/// `secure`). webpki checks the name last, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Accepts any server certificate (GOST's default `secure=false`), while still checking that
/// the handshake is signed by the key of the certificate presented.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
