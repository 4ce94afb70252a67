//! Trusted identities: X.509 distinguished names, AWS Signer signing-profile
//! ARNs, and how a signer is matched.
//!
//! Input: the `trustedIdentities` strings of a trust policy statement, and
//! the signing certificate's subject (built by the verifier with
//! [`DistinguishedName::from_attributes`]) or, for an AWS Signer signature,
//! its signed signing-profile-version ARN. Output: a typed
//! [`TrustedIdentity`] list and a yes/no match. An X.509 subject matches as
//! notation decides it: every attribute of the policy DN must be in the
//! signer's subject with an equal value (a subset match; values compare
//! exactly, attribute order is ignored). A [`SigningProfileArn`] matches as
//! the AWS Signer notation plugin decides it (see [`SigningProfileArn::matches`]).
//!
//! Limits: single-valued RDNs only (`+` is refused, as notation refuses it),
//! each attribute type at most once, no empty values, no `#`-hex (BER)
//! values. Attribute types are compared case-insensitively and the common
//! ones are canonicalised (`commonName`, `cn` and `2.5.4.3` are all `CN`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Why a distinguished name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnError {
    /// Nothing but spaces.
    #[error("the distinguished name is empty")]
    Empty,
    /// An RDN between separators is empty (`C=US,,O=x`, or a trailing comma).
    #[error("the distinguished name has an empty RDN")]
    EmptyRdn,
    /// An RDN has no `=`.
    #[error("RDN {rdn:?} has no '=' between attribute type and value")]
    MissingEquals {
        /// The RDN text.
        rdn: String,
    },
    /// The attribute type is neither a name (`OU`) nor a dotted OID (`2.5.4.11`).
    #[error("attribute type {attribute:?} is not valid")]
    InvalidAttributeType {
        /// The type as written.
        attribute: String,
    },
    /// An attribute has an empty value.
    #[error("attribute {attribute} has an empty value")]
    EmptyValue {
        /// The attribute type.
        attribute: AttributeType,
    },
    /// An RDN has several attributes joined with `+`.
    #[error("attribute {attribute} is part of a multi-valued RDN ('+'), which is not supported")]
    MultiValuedRdn {
        /// The attribute before the `+`.
        attribute: AttributeType,
    },
    /// The same attribute type appears twice.
    #[error(
        "attribute {attribute} appears more than once, a DN can only have unique RDN attributes"
    )]
    DuplicateAttribute {
        /// The repeated attribute type.
        attribute: AttributeType,
    },
    /// A `\` is followed by something that is neither a special character nor two hex digits.
    #[error("attribute {attribute} has an invalid escape sequence")]
    BadEscape {
        /// The attribute whose value has it.
        attribute: AttributeType,
    },
    /// A character RFC 4514 requires to be escaped appears unescaped.
    #[error("attribute {attribute} has an unescaped {character:?}, write it as '\\{character}'")]
    UnescapedCharacter {
        /// The attribute whose value has it.
        attribute: AttributeType,
        /// The character.
        character: char,
    },
    /// A `#`-prefixed (hex-encoded BER) value.
    #[error("attribute {attribute} has a '#' hex-encoded value, which is not supported; escape a leading '#' as '\\#'")]
    HexValueUnsupported {
        /// The attribute.
        attribute: AttributeType,
    },
    /// Hex escapes that do not form UTF-8.
    #[error("attribute {attribute} has hex escapes that are not valid UTF-8")]
    InvalidUtf8 {
        /// The attribute.
        attribute: AttributeType,
    },
}

/// An attribute type, canonical: a known short name in upper case (`CN`, `ST`) or a dotted OID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(String);

/// (OID, short name, long name) of the attribute types with a canonical short name.
const KNOWN_TYPES: &[(&str, &str, &str)] = &[
    ("2.5.4.3", "CN", "commonName"),
    ("2.5.4.4", "SN", "surname"),
    ("2.5.4.5", "SERIALNUMBER", "serialNumber"),
    ("2.5.4.6", "C", "countryName"),
    ("2.5.4.7", "L", "localityName"),
    ("2.5.4.8", "ST", "stateOrProvinceName"),
    ("2.5.4.9", "STREET", "streetAddress"),
    ("2.5.4.10", "O", "organizationName"),
    ("2.5.4.11", "OU", "organizationalUnitName"),
    ("2.5.4.17", "POSTALCODE", "postalCode"),
    ("0.9.2342.19200300.100.1.1", "UID", "userId"),
    ("0.9.2342.19200300.100.1.25", "DC", "domainComponent"),
];

impl AttributeType {
    /// Country (`C`), mandatory in a trusted identity.
    pub const COUNTRY: &'static str = "C";
    /// State or province (`ST`), mandatory in a trusted identity.
    pub const STATE: &'static str = "ST";
    /// Organization (`O`), mandatory in a trusted identity.
    pub const ORGANIZATION: &'static str = "O";

    /// Parses a name or dotted OID into its canonical form.
    ///
    /// # Errors
    ///
    /// [`DnError::InvalidAttributeType`] when it is neither (RFC 4512 `descr` / `numericoid`).
    pub fn new(text: &str) -> Result<Self, DnError> {
        let bad = || DnError::InvalidAttributeType {
            attribute: text.chars().take(80).collect(),
        };
        let first = text.chars().next().ok_or_else(bad)?;
        if first.is_ascii_alphabetic() {
            if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(bad());
            }
            let canonical = KNOWN_TYPES
                .iter()
                .find(|(_, short, long)| {
                    short.eq_ignore_ascii_case(text) || long.eq_ignore_ascii_case(text)
                })
                .map_or_else(
                    || text.to_ascii_uppercase(),
                    |(_, short, _)| (*short).to_owned(),
                );
            return Ok(Self(canonical));
        }
        let valid_oid = text.split('.').count() >= 2
            && text.split('.').all(|arc| {
                !arc.is_empty()
                    && arc.bytes().all(|b| b.is_ascii_digit())
                    && (arc == "0" || !arc.starts_with('0'))
            });
        if !valid_oid {
            return Err(bad());
        }
        Ok(Self(
            KNOWN_TYPES
                .iter()
                .find(|(oid, _, _)| *oid == text)
                .map_or_else(|| text.to_owned(), |(_, short, _)| (*short).to_owned()),
        ))
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An X.509 distinguished name: single-valued RDNs, each attribute type once.
///
/// Equality and hashing ignore attribute order; `Display` keeps it (RFC 4514 escaping).
#[derive(Debug, Clone)]
pub struct DistinguishedName {
    attributes: Vec<(AttributeType, String)>,
}

impl DistinguishedName {
    /// Builds a DN from already-decoded (type, value) pairs, e.g. a certificate's subject.
    ///
    /// Types are names or dotted OIDs; values are taken as they are (no escaping).
    ///
    /// # Errors
    ///
    /// Invalid type, empty value, or a type that appears twice.
    pub fn from_attributes<T, V>(pairs: impl IntoIterator<Item = (T, V)>) -> Result<Self, DnError>
    where
        T: AsRef<str>,
        V: Into<String>,
    {
        let mut dn = Self {
            attributes: Vec::new(),
        };
        for (ty, value) in pairs {
            dn.push(AttributeType::new(ty.as_ref())?, value.into())?;
        }
        if dn.attributes.is_empty() {
            return Err(DnError::Empty);
        }
        Ok(dn)
    }

    fn push(&mut self, attribute: AttributeType, value: String) -> Result<(), DnError> {
        if value.is_empty() {
            return Err(DnError::EmptyValue { attribute });
        }
        if self.get(attribute.as_str()).is_some() {
            return Err(DnError::DuplicateAttribute { attribute });
        }
        self.attributes.push((attribute, value));
        Ok(())
    }

    /// The attributes in the order written.
    pub fn attributes(&self) -> impl Iterator<Item = (&AttributeType, &str)> {
        self.attributes.iter().map(|(t, v)| (t, v.as_str()))
    }

    /// The value of the attribute with canonical type `ty` (`"CN"`, `"2.5.4.99"`).
    pub fn get(&self, ty: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(t, _)| t.as_str() == ty)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every attribute of `self` is in `other` with an equal value.
    pub fn is_subset_of(&self, other: &DistinguishedName) -> bool {
        self.attributes
            .iter()
            .all(|(t, v)| other.get(t.as_str()) == Some(v.as_str()))
    }

    fn sorted(&self) -> Vec<(&AttributeType, &str)> {
        let mut v: Vec<_> = self.attributes().collect();
        v.sort();
        v
    }
}

impl PartialEq for DistinguishedName {
    fn eq(&self, other: &Self) -> bool {
        self.sorted() == other.sorted()
    }
}

impl Eq for DistinguishedName {}

impl Hash for DistinguishedName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.sorted().hash(state);
    }
}

impl FromStr for DistinguishedName {
    type Err = DnError;

    /// Parses RFC 4514 text such as `CN=a\,b, O=Notary, ST=WA, C=US`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim_matches(' ').is_empty() {
            return Err(DnError::Empty);
        }
        let mut dn = Self {
            attributes: Vec::new(),
        };
        let mut chars = s.chars().peekable();
        loop {
            let attribute = parse_type(&mut chars)?;
            let (value, end) = parse_value(&mut chars, &attribute)?;
            if end == Some('+') {
                return Err(DnError::MultiValuedRdn { attribute });
            }
            dn.push(attribute, value)?;
            if end.is_none() {
                return Ok(dn);
            }
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Reads `type=` (surrounding spaces allowed) and returns the canonical type.
fn parse_type(chars: &mut Chars<'_>) -> Result<AttributeType, DnError> {
    let mut text = String::new();
    loop {
        match chars.next() {
            Some('=') => break,
            // RFC 2253 §4 also accepts ';' between RDNs; go-ldap (notation's parser) does too.
            None | Some(',' | ';' | '+') => {
                let rdn = text.trim_matches(' ');
                return Err(if rdn.is_empty() {
                    DnError::EmptyRdn
                } else {
                    DnError::MissingEquals {
                        rdn: rdn.chars().take(80).collect(),
                    }
                });
            }
            Some(c) => text.push(c),
        }
    }
    AttributeType::new(text.trim_matches(' '))
}

/// Reads a value up to an unescaped separator; returns it and the separator (`None` at the end).
fn parse_value(
    chars: &mut Chars<'_>,
    attribute: &AttributeType,
) -> Result<(String, Option<char>), DnError> {
    while chars.peek() == Some(&' ') {
        chars.next();
    }
    // "If the UTF-8 string does not have any of the following characters
    //  that need escaping, then that string can be used as is. […]
    //  - a space (' ' U+0020) or number sign ('#' U+0023) occurring at the
    //    beginning of the string; - a space character occurring at the end
    //    of the string; - one of the characters '"', '+', ',', ';', '<',
    //    '>', or '\' (U+0022, U+002B, U+002C, U+003B, U+003C, U+003E, or
    //    U+005C, respectively); - the null (U+0000) character."
    // https://www.rfc-editor.org/rfc/rfc4514#section-2.4
    if chars.peek() == Some(&'#') {
        return Err(DnError::HexValueUnsupported {
            attribute: attribute.clone(),
        });
    }
    let mut bytes: Vec<u8> = Vec::new();
    // Length up to the last character that is not an unescaped space: trailing spaces are padding.
    let mut keep = 0;
    let end = loop {
        let Some(c) = chars.next() else { break None };
        match c {
            ',' | ';' | '+' => break Some(c),
            '\\' => {
                let bad = || DnError::BadEscape {
                    attribute: attribute.clone(),
                };
                match chars.next() {
                    Some(e @ (' ' | '"' | '#' | '+' | ',' | ';' | '<' | '=' | '>' | '\\')) => {
                        bytes.push(e as u8);
                    }
                    Some(h) if h.is_ascii_hexdigit() => {
                        let l = chars
                            .next()
                            .filter(char::is_ascii_hexdigit)
                            .ok_or_else(bad)?;
                        let byte = hex_value(h) * 16 + hex_value(l);
                        bytes.push(byte);
                    }
                    _ => return Err(bad()),
                }
                keep = bytes.len();
            }
            '"' | '<' | '>' | '\0' => {
                return Err(DnError::UnescapedCharacter {
                    attribute: attribute.clone(),
                    character: c,
                })
            }
            _ => {
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                if c != ' ' {
                    keep = bytes.len();
                }
            }
        }
    };
    bytes.truncate(keep);
    let value = String::from_utf8(bytes).map_err(|_| DnError::InvalidUtf8 {
        attribute: attribute.clone(),
    })?;
    Ok((value, end))
}

fn hex_value(c: char) -> u8 {
    // Callers pass only ASCII hex digits, so the digit always exists.
    c.to_digit(16).map_or(0, |d| d as u8)
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (ty, value)) in self.attributes.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{ty}=")?;
            let last = value.chars().count().saturating_sub(1);
            for (j, c) in value.chars().enumerate() {
                match c {
                    '"' | '+' | ',' | ';' | '<' | '>' | '\\' => write!(f, "\\{c}")?,
                    ' ' | '#' if j == 0 => write!(f, "\\{c}")?,
                    ' ' if j == last => f.write_str("\\ ")?,
                    '\0' => f.write_str("\\00")?,
                    _ => write!(f, "{c}")?,
                }
            }
        }
        Ok(())
    }
}

/// The prefix of an X.509 subject identity in `trustedIdentities`.
pub const X509_SUBJECT: &str = "x509.subject";
/// The wildcard identity and scope.
pub const WILDCARD: &str = "*";

/// The prefix every ARN starts with.
pub const ARN_PREFIX: &str = "arn:";

/// One entry of a statement's `trustedIdentities`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrustedIdentity {
    /// `"*"`: any signer whose chain ends in the statement's trust stores.
    Any,
    /// `"x509.subject:<DN>"`: signers whose subject contains this DN.
    X509Subject(DistinguishedName),
    /// `"arn:<partition>:signer:<region>:<account>:/signing-profiles/<name>[/<version>]"`:
    /// AWS Signer signatures made with this signing profile (any version) or
    /// this profile version. Never matches a certificate subject.
    SigningProfile(SigningProfileArn),
}

impl TrustedIdentity {
    /// Whether a signer with this certificate subject is trusted by this entry.
    ///
    /// A [`TrustedIdentity::SigningProfile`] never matches a subject: AWS
    /// Signer's leaf subject is the same for every AWS customer.
    pub fn matches(&self, signer_subject: &DistinguishedName) -> bool {
        match self {
            Self::Any => true,
            Self::X509Subject(dn) => dn.is_subset_of(signer_subject),
            Self::SigningProfile(_) => false,
        }
    }
}

impl fmt::Display for TrustedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str(WILDCARD),
            Self::X509Subject(dn) => write!(f, "{X509_SUBJECT}:{dn}"),
            Self::SigningProfile(arn) => write!(f, "{arn}"),
        }
    }
}

/// Whether a [`SigningProfileArn`] names a whole profile or one version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileArnKind {
    /// `…:/signing-profiles/<name>`: every version of the profile.
    Profile,
    /// `…:/signing-profiles/<name>/<version>`: exactly this version.
    ProfileVersion,
}

/// An AWS Signer signing-profile or signing-profile-version ARN, as written
/// in `trustedIdentities`.
///
/// The form is the one the AWS Signer notation plugin reads
/// (aws/aws-signer-notation-plugin, `internal/verifier/verifier.go`,
/// `isSigningProfileArn`): an ARN (`arn:<partition>:<service>:<region>:<account>:<resource>`)
/// whose service is `signer` and whose resource starts with
/// `/signing-profiles/`; a resource of three `/`-separated parts
/// (`/signing-profiles/<name>`) is a profile, of four a profile version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SigningProfileArn {
    text: String,
    kind: ProfileArnKind,
}

/// Why an `arn:` trusted identity is not a signing-profile ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArnError {
    /// Fewer than six `:`-separated sections, or an empty partition or account.
    #[error("it is not an ARN (arn:<partition>:<service>:<region>:<account>:<resource>)")]
    NotAnArn,
    /// The service is not `signer`.
    #[error("its service is not \"signer\"")]
    NotSigner,
    /// The resource is not `/signing-profiles/<name>` or `/signing-profiles/<name>/<version>`.
    #[error("its resource is not /signing-profiles/<name> or /signing-profiles/<name>/<version>")]
    NotSigningProfile,
}

impl SigningProfileArn {
    /// Parses a signing-profile or signing-profile-version ARN.
    ///
    /// # Errors
    /// [`ArnError`] saying which part is wrong.
    pub fn parse(text: &str) -> Result<Self, ArnError> {
        // ARN: "arn:partition:service:region:account-id:resource", the
        // resource keeping any further ':' (aws-sdk-go-v2 `arn.Parse`).
        let mut sections = text.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some(service),
            Some(_region),
            Some(account),
            Some(resource),
        ) = (
            sections.next(),
            sections.next(),
            sections.next(),
            sections.next(),
            sections.next(),
            sections.next(),
        )
        else {
            return Err(ArnError::NotAnArn);
        };
        if partition.is_empty() || account.is_empty() {
            return Err(ArnError::NotAnArn);
        }
        if service != "signer" {
            return Err(ArnError::NotSigner);
        }
        let Some(rest) = resource.strip_prefix("/signing-profiles/") else {
            return Err(ArnError::NotSigningProfile);
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let kind = match parts.as_slice() {
            [name] if !name.is_empty() => ProfileArnKind::Profile,
            [name, version] if !name.is_empty() && !version.is_empty() => {
                ProfileArnKind::ProfileVersion
            }
            _ => return Err(ArnError::NotSigningProfile),
        };
        Ok(Self {
            text: text.to_owned(),
            kind,
        })
    }

    /// Profile or profile version.
    pub fn kind(&self) -> ProfileArnKind {
        self.kind
    }

    /// The ARN as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a signature whose signed
    /// `com.amazonaws.signer.signingProfileVersion` is `profile_version` is
    /// trusted by this identity.
    ///
    /// As the plugin compares (`validateTrustedIdentity`): a profile ARN
    /// matches when it equals the signed profile-version ARN up to its last
    /// `/`, a profile-version ARN when it equals the whole signed value; both
    /// ignoring ASCII case (`strings.EqualFold`).
    pub fn matches(&self, profile_version: &str) -> bool {
        match self.kind {
            ProfileArnKind::Profile => profile_version
                .rfind('/')
                .is_some_and(|i| profile_version[..i].eq_ignore_ascii_case(&self.text)),
            ProfileArnKind::ProfileVersion => profile_version.eq_ignore_ascii_case(&self.text),
        }
    }
}

impl fmt::Display for SigningProfileArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a statement's `trustedIdentities` are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// An entry is `""`.
    #[error("has an empty trusted identity")]
    Empty,
    /// `"*"` next to other entries.
    #[error("uses a wildcard trusted identity '*', a wildcard identity cannot be used in conjunction with other values")]
    WildcardWithOthers,
    /// No `:` between type and value.
    #[error("has trusted identity {identity:?} missing separator ':', write it as \"x509.subject:C=..,ST=..,O=..\"")]
    MissingSeparator {
        /// The entry as written.
        identity: String,
    },
    /// A type other than `x509.subject` or an AWS Signer signing-profile ARN
    /// (notation passes other types to plugins; pullgate runs none).
    #[error("has trusted identity {identity:?} of unsupported type {prefix:?}, only \"x509.subject\" and AWS Signer signing-profile ARNs are supported")]
    UnsupportedType {
        /// The entry as written.
        identity: String,
        /// The part before the first `:`.
        prefix: String,
    },
    /// `x509.subject:` with nothing after it.
    #[error("has trusted identity {identity:?} without an identity value")]
    MissingValue {
        /// The entry as written.
        identity: String,
    },
    /// The DN does not parse.
    #[error("has trusted identity {identity:?} whose distinguished name is not valid: {source}")]
    InvalidDn {
        /// The entry as written.
        identity: String,
        /// What is wrong with the DN.
        source: DnError,
    },
    /// The DN lacks `C`, `ST` or `O`.
    #[error("has trusted identity {identity:?} with no mandatory RDN attribute for {attribute:?}, it must contain 'C', 'ST' and 'O' at a minimum")]
    MissingMandatory {
        /// The entry as written.
        identity: String,
        /// `"C"`, `"ST"` or `"O"`.
        attribute: &'static str,
    },
    /// An `arn:` entry that is not an AWS Signer signing-profile or profile-version ARN.
    #[error("has trusted identity {identity:?} which is not an AWS Signer signing-profile ARN: {reason}; write it as \"arn:aws:signer:<region>:<account>:/signing-profiles/<name>\" (any version) or \"…/<name>/<version>\"")]
    InvalidSigningProfileArn {
        /// The entry as written.
        identity: String,
        /// What is wrong with it.
        reason: ArnError,
    },
    /// One entry's DN is a subset of another's (duplicates included).
    #[error("has overlapping x509 trustedIdentities, {first:?} overlaps with {second:?}")]
    Overlapping {
        /// The entry that is a subset.
        first: String,
        /// The entry it is a subset of.
        second: String,
    },
}

/// Validates a statement's `trustedIdentities` (which must be non-empty; the caller checks that).
///
/// # Errors
///
/// The first rule broken, in notation's order: wildcard mixing, then each entry, then overlap.
pub fn parse_trusted_identities(values: &[String]) -> Result<Vec<TrustedIdentity>, IdentityError> {
    // "Alternatively, it supports a single item with value `*`, to indicate
    //  that any certificate that chains to the associated trust store
    //  (`trustStore`) is allowed."
    // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trusted-identities-constraints
    if values.len() > 1 && values.iter().any(|v| v == WILDCARD) {
        return Err(IdentityError::WildcardWithOthers);
    }
    let mut out = Vec::with_capacity(values.len());
    for identity in values {
        out.push(parse_one(identity)?);
    }
    // "`trustedIdentities` list items MUST NOT have overlapping values, they
    //  are considered overlapping if there exists a certificate for which
    //  multiple DNs evaluate true."
    // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trusted-identities-constraints
    for (i, (first, a)) in values.iter().zip(&out).enumerate() {
        let TrustedIdentity::X509Subject(a) = a else {
            continue;
        };
        for (j, (second, b)) in values.iter().zip(&out).enumerate() {
            let TrustedIdentity::X509Subject(b) = b else {
                continue;
            };
            if i != j && a.is_subset_of(b) {
                return Err(IdentityError::Overlapping {
                    first: first.clone(),
                    second: second.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn parse_one(identity: &str) -> Result<TrustedIdentity, IdentityError> {
    if identity.is_empty() {
        return Err(IdentityError::Empty);
    }
    if identity == WILDCARD {
        return Ok(TrustedIdentity::Any);
    }
    // The AWS Signer plugin's trusted identities are bare ARNs (its README and
    // `examples/verify`: `"trustedIdentities": ["arn:aws:signer:…:/signing-profiles/…"]`).
    if identity.starts_with(ARN_PREFIX) {
        return SigningProfileArn::parse(identity)
            .map(TrustedIdentity::SigningProfile)
            .map_err(|reason| IdentityError::InvalidSigningProfileArn {
                identity: identity.to_owned(),
                reason,
            });
    }
    let Some((prefix, value)) = identity.split_once(':') else {
        return Err(IdentityError::MissingSeparator {
            identity: identity.to_owned(),
        });
    };
    if prefix != X509_SUBJECT {
        return Err(IdentityError::UnsupportedType {
            identity: identity.to_owned(),
            prefix: prefix.to_owned(),
        });
    }
    if value.trim_matches(' ').is_empty() {
        return Err(IdentityError::MissingValue {
            identity: identity.to_owned(),
        });
    }
    let dn: DistinguishedName = value.parse().map_err(|source| IdentityError::InvalidDn {
        identity: identity.to_owned(),
        source,
    })?;
    // "Each identity in `identities` list MUST contain country (C), state or
    //  province (ST), and organization (O) RDNs. All other RDNs are optional."
    // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#trusted-identities-constraints
    for attribute in [
        AttributeType::COUNTRY,
        AttributeType::STATE,
        AttributeType::ORGANIZATION,
    ] {
        if dn.get(attribute).is_none() {
            return Err(IdentityError::MissingMandatory {
                identity: identity.to_owned(),
                attribute,
            });
        }
    }
    Ok(TrustedIdentity::X509Subject(dn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        s.parse().unwrap()
    }

    fn ty(s: &str) -> AttributeType {
        AttributeType::new(s).unwrap()
    }

    #[test]
    fn parses_rfc4514_text() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "CN=e2e,O=Notary,L=Seattle,ST=WA,C=US",
                &[
                    ("CN", "e2e"),
                    ("O", "Notary"),
                    ("L", "Seattle"),
                    ("ST", "WA"),
                    ("C", "US"),
                ],
            ),
            // spaces around separators and '=' are padding
            (
                " C=US ,  ST = WA, O=wabbit-networks.io ",
                &[("C", "US"), ("ST", "WA"), ("O", "wabbit-networks.io")],
            ),
            // escaped specials, escaped leading/trailing spaces
            (r"CN=a\,b,O=x\;y\+z", &[("CN", "a,b"), ("O", "x;y+z")]),
            (r"CN=\ lead,O=trail\ ", &[("CN", " lead"), ("O", "trail ")]),
            (
                r"CN=back\\slash,O=\#hash",
                &[("CN", r"back\slash"), ("O", "#hash")],
            ),
            (r#"CN=\"quoted\" \<x\>"#, &[("CN", r#""quoted" <x>"#)]),
            // hex escapes, including multi-byte UTF-8
            (r"CN=caf\C3\A9,O=a\2Cb", &[("CN", "café"), ("O", "a,b")]),
            // inner spaces and '=' in a value are kept
            (
                "O=Internet Widgits Pty Ltd,CN=a=b",
                &[("O", "Internet Widgits Pty Ltd"), ("CN", "a=b")],
            ),
            // ';' separates RDNs (RFC 2253, go-ldap)
            ("C=US;ST=WA", &[("C", "US"), ("ST", "WA")]),
            // type names are case-insensitive; long names and OIDs canonicalise
            (
                "cn=x,organizationName=y,2.5.4.6=US,1.2.3.4=z",
                &[("CN", "x"), ("O", "y"), ("C", "US"), ("1.2.3.4", "z")],
            ),
            ("UnknownAttr=v", &[("UNKNOWNATTR", "v")]),
        ];
        for (text, want) in cases {
            let got = dn(text);
            let got: Vec<_> = got.attributes().map(|(t, v)| (t.as_str(), v)).collect();
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn refuses_malformed_dns() {
        let cases: &[(&str, DnError)] = &[
            ("", DnError::Empty),
            ("   ", DnError::Empty),
            ("C=US,,O=x", DnError::EmptyRdn),
            ("C=US,", DnError::EmptyRdn),
            ("C=US,O", DnError::MissingEquals { rdn: "O".into() }),
            (
                "justtext",
                DnError::MissingEquals {
                    rdn: "justtext".into(),
                },
            ),
            (
                "=US",
                DnError::InvalidAttributeType {
                    attribute: "".into(),
                },
            ),
            (
                "C_X=US",
                DnError::InvalidAttributeType {
                    attribute: "C_X".into(),
                },
            ),
            (
                "1.=US",
                DnError::InvalidAttributeType {
                    attribute: "1.".into(),
                },
            ),
            (
                "01.2=US",
                DnError::InvalidAttributeType {
                    attribute: "01.2".into(),
                },
            ),
            ("C=", DnError::EmptyValue { attribute: ty("C") }),
            ("C=  ,O=x", DnError::EmptyValue { attribute: ty("C") }),
            (
                "CN=a+O=b,C=US",
                DnError::MultiValuedRdn {
                    attribute: ty("CN"),
                },
            ),
            (
                "C=US,c=CA",
                DnError::DuplicateAttribute { attribute: ty("C") },
            ),
            (
                "CN=x,2.5.4.3=y",
                DnError::DuplicateAttribute {
                    attribute: ty("CN"),
                },
            ),
            (
                r"CN=a\q",
                DnError::BadEscape {
                    attribute: ty("CN"),
                },
            ),
            (
                r"CN=a\4",
                DnError::BadEscape {
                    attribute: ty("CN"),
                },
            ),
            (
                r"CN=a\",
                DnError::BadEscape {
                    attribute: ty("CN"),
                },
            ),
            (
                r"CN=\FF",
                DnError::InvalidUtf8 {
                    attribute: ty("CN"),
                },
            ),
            (
                "CN=#0403",
                DnError::HexValueUnsupported {
                    attribute: ty("CN"),
                },
            ),
            (
                r#"CN=a"b"#,
                DnError::UnescapedCharacter {
                    attribute: ty("CN"),
                    character: '"',
                },
            ),
            (
                "CN=a<b",
                DnError::UnescapedCharacter {
                    attribute: ty("CN"),
                    character: '<',
                },
            ),
            (
                "CN=a\0b",
                DnError::UnescapedCharacter {
                    attribute: ty("CN"),
                    character: '\0',
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                text.parse::<DistinguishedName>().as_ref().err(),
                Some(want),
                "{text:?}"
            );
        }
    }

    #[test]
    fn compares_ignoring_attribute_order() {
        assert_eq!(dn("C=US,ST=WA,O=x"), dn("O=x, ST=WA, C=US"));
        assert_eq!(dn("countryName=US,O=x"), dn("c=US,2.5.4.10=x"));
        assert_ne!(dn("C=US,ST=WA,O=x"), dn("C=US,ST=WA,O=X"));
        assert_ne!(dn("C=US,ST=WA,O=x"), dn("C=US,ST=WA,O=x,CN=y"));
    }

    #[test]
    fn display_escapes_and_round_trips() {
        let cases = [
            (r"CN=a\,b,O=Notary", r"CN=a\,b,O=Notary"),
            (r"cn=\ x\ ,o=\#y", r"CN=\ x\ ,O=\#y"),
            (r"CN=a\2Bb\3C", r"CN=a\+b\<"),
            ("C = US ; ST=WA", "C=US,ST=WA"),
        ];
        for (input, want) in cases {
            let d = dn(input);
            assert_eq!(d.to_string(), want, "{input}");
            assert_eq!(dn(&d.to_string()), d);
        }
    }

    #[test]
    fn builds_from_decoded_certificate_attributes() {
        let subject = DistinguishedName::from_attributes([
            ("2.5.4.6", "US"),
            ("2.5.4.10", "a,b"),
            ("CN", "x"),
        ])
        .unwrap();
        assert_eq!(subject, dn(r"C=US,O=a\,b,CN=x"));
        assert_eq!(
            DistinguishedName::from_attributes([("C", "US"), ("2.5.4.6", "CA")]).err(),
            Some(DnError::DuplicateAttribute { attribute: ty("C") })
        );
        assert_eq!(
            DistinguishedName::from_attributes(Vec::<(&str, &str)>::new()).err(),
            Some(DnError::Empty)
        );
    }

    #[test]
    fn matches_signer_subjects_as_a_subset() {
        let signer = dn("CN=e2e,O=Notary,L=Seattle,ST=WA,C=US");
        let cases = [
            ("C=US,ST=WA,O=Notary", true),
            ("CN=e2e,O=Notary,L=Seattle,ST=WA,C=US", true),
            ("C=US, ST=WA, L=Seattle, O=Notary, CN=e2e", true),
            ("C=US,ST=WA,O=notary", false), // values compare exactly
            ("C=US,ST=WA,O=Notary,OU=Build", false), // signer lacks OU
            ("C=USB,ST=WA,O=Notary", false),
            ("C=US,ST=WA,O=Notary,CN=e2", false),
        ];
        for (policy, want) in cases {
            let id = TrustedIdentity::X509Subject(dn(policy));
            assert_eq!(id.matches(&signer), want, "{policy}");
        }
        assert!(TrustedIdentity::Any.matches(&signer));
    }

    #[test]
    fn validates_trusted_identity_lists() {
        use IdentityError as E;
        let full = "x509.subject: CN=e2e,O=Notary,L=Seattle,ST=WA,C=US";
        let cases: &[(&[&str], Option<IdentityError>)] = &[
            (&["*"], None),
            (&[full], None),
            (
                &[
                    full,
                    "x509.subject: O=Internet Widgits Pty Ltd,ST=Some-State,C=AU",
                ],
                None,
            ),
            (
                &["x509.subject:C=US,ST=WA,O=a", "x509.subject:C=US,ST=WA,O=b"],
                None,
            ),
            (&[""], Some(E::Empty)),
            (&["*", full], Some(E::WildcardWithOthers)),
            (&["*", "*"], Some(E::WildcardWithOthers)),
            (
                &["x509.subject CN=e2e,O=Notary,ST=WA,C=US"],
                Some(E::MissingSeparator {
                    identity: "x509.subject CN=e2e,O=Notary,ST=WA,C=US".into(),
                }),
            ),
            (
                &["x509.subject: "],
                Some(E::MissingValue {
                    identity: "x509.subject: ".into(),
                }),
            ),
            (
                &["X509.Subject:C=US,ST=WA,O=a"],
                Some(E::UnsupportedType {
                    identity: "X509.Subject:C=US,ST=WA,O=a".into(),
                    prefix: "X509.Subject".into(),
                }),
            ),
            (
                &["x509.subject:C=US,ST=WA"],
                Some(E::MissingMandatory {
                    identity: "x509.subject:C=US,ST=WA".into(),
                    attribute: "O",
                }),
            ),
            (
                &["x509.subject:C=US,O=a"],
                Some(E::MissingMandatory {
                    identity: "x509.subject:C=US,O=a".into(),
                    attribute: "ST",
                }),
            ),
            (
                &["x509.subject:ST=WA,O=a"],
                Some(E::MissingMandatory {
                    identity: "x509.subject:ST=WA,O=a".into(),
                    attribute: "C",
                }),
            ),
            (
                &["x509.subject:C=US,ST=WA,O=a+OU=b"],
                Some(E::InvalidDn {
                    identity: "x509.subject:C=US,ST=WA,O=a+OU=b".into(),
                    source: DnError::MultiValuedRdn { attribute: ty("O") },
                }),
            ),
            (
                &[
                    "x509.subject:C=US,ST=WA,O=a,OU=b",
                    "x509.subject:O=a,ST=WA,C=US",
                ],
                Some(E::Overlapping {
                    first: "x509.subject:O=a,ST=WA,C=US".into(),
                    second: "x509.subject:C=US,ST=WA,O=a,OU=b".into(),
                }),
            ),
            (
                &[
                    "x509.subject:C=US,ST=WA,O=a",
                    "x509.subject:C=US, ST=WA, O=a",
                ],
                Some(E::Overlapping {
                    first: "x509.subject:C=US,ST=WA,O=a".into(),
                    second: "x509.subject:C=US, ST=WA, O=a".into(),
                }),
            ),
        ];
        for (values, want) in cases {
            let values: Vec<String> = values.iter().map(|s| (*s).to_owned()).collect();
            let got = parse_trusted_identities(&values);
            assert_eq!(got.as_ref().err(), want.as_ref(), "{values:?}");
        }
    }

    #[test]
    fn parses_signing_profile_arns_as_the_plugin_does() {
        let profile = "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release";
        let version =
            "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release/Ab12Cd34Ef";
        let p = SigningProfileArn::parse(profile).unwrap();
        assert_eq!(p.kind(), ProfileArnKind::Profile);
        let v = SigningProfileArn::parse(version).unwrap();
        assert_eq!(v.kind(), ProfileArnKind::ProfileVersion);
        let gov = "arn:aws-us-gov:signer:us-gov-west-1:123456789012:/signing-profiles/p";
        assert!(SigningProfileArn::parse(gov).is_ok());
        let bad: &[(&str, ArnError)] = &[
            ("arn:aws:signer:eu-west-1:123456789012", ArnError::NotAnArn),
            (
                "arn::signer:eu-west-1:1:/signing-profiles/p",
                ArnError::NotAnArn,
            ),
            (
                "arn:aws:dynamodb:us-east-2:123456789012:table/t",
                ArnError::NotSigner,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-jobs/0f1e",
                ArnError::NotSigningProfile,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/beer/p",
                ArnError::NotSigningProfile,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/",
                ArnError::NotSigningProfile,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/p/v/x",
                ArnError::NotSigningProfile,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/p//",
                ArnError::NotSigningProfile,
            ),
        ];
        for (text, want) in bad {
            assert_eq!(SigningProfileArn::parse(text), Err(*want), "{text}");
        }
        // The identity list accepts them, refuses broken ones by name.
        let ids = parse_trusted_identities(&[profile.to_owned(), version.to_owned()]).unwrap();
        assert_eq!(ids[0], TrustedIdentity::SigningProfile(p.clone()));
        assert_eq!(ids[0].to_string(), profile);
        assert!(matches!(
            parse_trusted_identities(&["arn:aws:signer:r:1:/signing-jobs/x".to_owned()]),
            Err(IdentityError::InvalidSigningProfileArn {
                reason: ArnError::NotSigningProfile,
                ..
            })
        ));
        // Mixed with x509.subject, as notation allows; with '*' refused.
        assert!(parse_trusted_identities(&[
            profile.to_owned(),
            "x509.subject:C=US,ST=WA,O=a".to_owned()
        ])
        .is_ok());
        assert_eq!(
            parse_trusted_identities(&["*".to_owned(), profile.to_owned()]),
            Err(IdentityError::WildcardWithOthers)
        );
    }

    #[test]
    fn matches_signing_profiles_case_insensitively_like_the_plugin() {
        let signed =
            "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release/Ab12Cd34Ef";
        let cases: &[(&str, bool)] = &[
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release",
                true,
            ),
            (
                "ARN:AWS:SIGNER:EU-WEST-1:123456789012:/SIGNING-PROFILES/CI_RELEASE",
                false,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/CI_Release",
                true,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release/Ab12Cd34Ef",
                true,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release/ab12cd34ef",
                true,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release/Zz99",
                false,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci",
                false,
            ),
            (
                "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release_2",
                false,
            ),
            (
                "arn:aws:signer:us-east-1:123456789012:/signing-profiles/ci_release",
                false,
            ),
            (
                "arn:aws:signer:eu-west-1:210987654321:/signing-profiles/ci_release",
                false,
            ),
        ];
        for (identity, want) in cases {
            // Upper-case "ARN:" is not an ARN prefix for the parser (as arn.Parse).
            let Ok(arn) = SigningProfileArn::parse(identity) else {
                assert!(!want, "{identity}");
                continue;
            };
            assert_eq!(arn.matches(signed), *want, "{identity}");
        }
        let subject = dn("CN=AWS Signer,OU=AWS Cryptography,O=AWS,L=Seattle,ST=WA,C=US");
        let profile = SigningProfileArn::parse(
            "arn:aws:signer:eu-west-1:123456789012:/signing-profiles/ci_release",
        )
        .unwrap();
        assert!(!TrustedIdentity::SigningProfile(profile).matches(&subject));
    }

    proptest::proptest! {
        #[test]
        fn dn_parsing_never_panics(s in "\\PC{0,200}") {
            let _ = s.parse::<DistinguishedName>();
        }

        #[test]
        fn dn_display_round_trips(s in "([a-zA-Z]{1,3}|[12]\\.[0-9]{1,2}\\.[0-9]) ?= ?[^\\\\]{0,12}(, ?[A-Z]{1,2}=[ -~]{1,8}){0,4}") {
            if let Ok(d) = s.parse::<DistinguishedName>() {
                let again: DistinguishedName = d.to_string().parse().unwrap();
                proptest::prop_assert_eq!(again, d);
            }
        }
    }
}
