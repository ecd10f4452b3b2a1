//! `nulab-pass mock-idp mint`: valid responses in bulk, one base64 `SAMLResponse` a line, for
//! load tests and benchmarks. Each response has fresh Response and Assertion IDs (so the replay
//! cache accepts each once) and the email `--email` with `{n}` replaced by its number. They
//! are signed on every core at once with the mock's key (`certs/mock-idp-key.pem`, the key
//! `nulab-pass mock-idp` serves in its metadata).

use std::io::Write;

use clap::{Args, ValueEnum};

use super::mock_idp::{MockIdp, ResponseSpec, Signing};

/// What `mock-idp mint` makes.
#[derive(Args, Debug, Clone)]
pub struct MintArgs {
    /// How many responses.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// The ACS URL (Destination and Recipient), e.g. `https://pass.example.com/sso/<id>/acs`.
    #[arg(long)]
    pub acs: String,
    /// The SP entity ID (Audience), e.g. `https://pass.example.com/sso/<id>/metadata`.
    #[arg(long)]
    pub audience: String,
    /// The email asserted in the NameID; `{n}` becomes the response's number.
    #[arg(long, default_value = "user{n}@example.com")]
    pub email: String,
    /// The number of the first response (`{n}` counts from it).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// Which elements are signed (RSA-SHA256).
    #[arg(long, value_enum, default_value_t = MintSigning::Both)]
    pub signing: MintSigning,
    /// The request answered (InResponseTo); none: IdP-initiated responses.
    #[arg(long)]
    pub in_response_to: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Which elements a minted response signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MintSigning {
    Response,
    Assertion,
    Both,
}

impl From<MintSigning> for Signing {
    fn from(s: MintSigning) -> Signing {
        match s {
            MintSigning::Response => Signing::Response,
            MintSigning::Assertion => Signing::Assertion,
            MintSigning::Both => Signing::Both,
        }
    }
}

impl MockIdp {
    /// `count` valid responses numbered from `first`, base64-encoded, in order; signed on
    /// `threads` threads.
    pub fn mint(&self, args: &MintArgs, threads: usize) -> anyhow::Result<Vec<String>> {
        let threads = threads.clamp(1, args.count.max(1));
        let per = args.count.div_ceil(threads);
        let chunks: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let start = args.first + t * per;
                    let end = (args.first + args.count).min(start + per);
                    scope.spawn(move || (start..end).map(|n| self.mint_one(args, n)).collect())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a minting thread panicked")))
                })
                .collect()
        });
        let mut all = Vec::with_capacity(args.count);
        for chunk in chunks {
            all.extend(chunk?);
        }
        Ok(all)
    }

    fn mint_one(&self, args: &MintArgs, n: usize) -> anyhow::Result<String> {
        let email = args.email.replace("{n}", &n.to_string());
        let mut spec = ResponseSpec::new(
            &email,
            &args.acs,
            &args.audience,
            args.in_response_to.as_deref(),
        );
        spec.signing = args.signing.into();
        self.response_b64(&spec)
    }
}

/// Mints as `args` asks with `idp` and writes one response a line.
pub fn run(idp: &MockIdp, args: &MintArgs) -> anyhow::Result<()> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let responses = idp.mint(args, threads)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    for response in responses {
        writeln!(out, "{response}")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(count: usize) -> MintArgs {
        MintArgs {
            count,
            acs: "http://sp.test/sso/x/acs".into(),
            audience: "http://sp.test/sso/x/metadata".into(),
            email: "user{n}@corp.test".into(),
            first: 5,
            signing: MintSigning::Both,
            in_response_to: None,
            out: None,
        }
    }

    #[test]
    fn mints_unique_responses_in_order() {
        use base64::Engine;
        let idp = MockIdp::generate("http://idp.test/metadata", "http://idp.test/sso").unwrap();
        let minted = idp.mint(&args(5), 2).unwrap();
        assert_eq!(minted.len(), 5);
        let xml: Vec<String> = minted
            .iter()
            .map(|b| {
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap())
                    .unwrap()
            })
            .collect();
        for (i, x) in xml.iter().enumerate() {
            assert!(x.contains(&format!(">user{}@corp.test<", i + 5)), "{x}");
        }
        let ids: std::collections::HashSet<_> = xml
            .iter()
            .map(|x| super::super::outline::scan(x).unwrap().response_id)
            .collect();
        assert_eq!(ids.len(), 5);
    }
}
