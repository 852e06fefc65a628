//! `mesh-policy trace`: a connection or request from a Pod to an address, hop by hop.

use std::process::ExitCode;

use clap::Args;
use mesh_policy::Headers;
use mesh_policy::request::HttpRequest;
use mesh_policy::trace::{TraceRequest, TraceSource};

use crate::output::Style;
use crate::{Format, Manifests, check, input};

#[derive(Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    manifests: Manifests,
    /// The client: `namespace/pod` of a Pod in the manifests, or an IP address.
    #[arg(long, value_name = "NS/POD|IP")]
    from: String,
    /// The destination, `host:port`: a Service name (svc, svc.ns, svc.ns.svc[.cluster.local]), a ServiceEntry
    /// host, a Service VIP or a Pod IP.
    #[arg(long, value_name = "HOST:PORT")]
    to: String,
    /// Make it an HTTP request with this method (default GET when --path, -H or --token is given).
    #[arg(long)]
    method: Option<String>,
    /// The request path (default `/` for an HTTP request).
    #[arg(long)]
    path: Option<String>,
    /// A request header, `name: value`. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A bearer token, sent as `authorization: Bearer TOKEN`.
    #[arg(long)]
    token: Option<String>,
    /// Unix seconds at which tokens are validated; default: now.
    #[arg(long)]
    now: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

fn request(args: &TraceArgs) -> Result<TraceRequest, String> {
    let source = match args.from.parse() {
        Ok(ip) => TraceSource { ip: Some(ip), ..TraceSource::default() },
        Err(_) => TraceSource { pod: Some(args.from.clone()), ..TraceSource::default() },
    };
    let http_wanted = args.method.is_some() || args.path.is_some() || !args.headers.is_empty() || args.token.is_some();
    let http = if http_wanted {
        let mut headers = Headers::new();
        for h in &args.headers {
            let (name, value) = h.split_once(':').ok_or_else(|| format!("-H {h:?}: expected `name: value`"))?;
            headers.push(name.trim(), value.trim());
        }
        if let Some(token) = &args.token {
            headers.push("authorization", format!("Bearer {token}"));
        }
        Some(HttpRequest {
            method: args.method.clone().unwrap_or_else(|| "GET".into()),
            path: args.path.clone().unwrap_or_else(|| "/".into()),
            host: None,
            headers,
        })
    } else {
        None
    };
    Ok(TraceRequest { source, destination: args.to.clone(), http, now: args.now })
}

pub(crate) fn run(args: &TraceArgs) -> Result<ExitCode, String> {
    let (mesh, _) = input::mesh(&args.manifests)?;
    let req = request(args)?;
    let result = mesh.trace(&req, check::now_or_clock(args.now)).map_err(|e| e.to_string())?;
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?),
        Format::Text => {
            let style = Style::stdout();
            out!("{} -> {}", args.from, args.to);
            if result.hops.is_empty() {
                out!("  no enforcement point on the way (the destination is outside the mesh)");
            }
            for (i, hop) in result.hops.iter().enumerate() {
                let proxy = hop.proxy.as_str();
                let name = hop.name.as_deref().unwrap_or("?");
                let peer = hop.peer.as_deref().unwrap_or("plaintext");
                out!("  {}. {proxy} {name} sees {peer}", i + 1);
                out!("     {}", check::line(&hop.decision, style));
            }
            let outcome = match (result.allowed, result.status, result.refused) {
                (true, Some(s), _) => style.good(&format!("allowed: the client gets {s}")),
                (true, None, _) => style.good("allowed: the connection goes through"),
                (false, _, true) => style.error("refused: the client's connection is refused or reset"),
                (false, Some(s), _) => style.error(&format!("denied: the client gets {s}")),
                (false, None, false) => style.error("denied"),
            };
            let endpoint = result.endpoint.as_deref().map(|e| format!(" (endpoint {e})")).unwrap_or_default();
            out!("  => {outcome}{}", style.dim(&endpoint));
            if !result.endpoints.is_empty() {
                let denied = result.endpoints.iter().filter(|e| !e.allowed).count();
                out!("     {} endpoints, {denied} denied", result.endpoints.len());
            }
        }
    }
    Ok(ExitCode::from(if result.allowed { 0 } else { 1 }))
}
