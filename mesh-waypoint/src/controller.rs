//! The status of the waypoint's GatewayClass and of its Gateways, as a Gateway API implementation reports them,
//! so that istiod and users see the waypoint: the class `Accepted`; each Gateway of the class `Accepted`,
//! `Programmed` once its Service has an address, and `status.addresses` that address (istiod makes a Gateway a
//! waypoint only once it has one).
//!
//! The waypoint's Service is the one named as the Gateway, in its namespace, as Gateway implementations
//! deploy it. Status is written with server-side apply (field manager `mesh-waypoint`), and only when it would
//! change: each write is an event the controller sees again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use mesh_runtime::shutdown::Shutdown;
use serde_json::{Value, json};
use tracing::{info, warn};

/// The field manager of the status writes.
const MANAGER: &str = "mesh-waypoint";
/// How often a Gateway is looked at again without an event (its Service's address may have changed).
const RECHECK: Duration = Duration::from_secs(300);

fn gateways() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "Gateway"), "gateways")
}

fn gateway_classes() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GatewayClass"),
        "gatewayclasses",
    )
}

fn services() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Service"), "services")
}

/// A status write failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControllerError(String);

struct Context {
    client: Client,
    class: String,
    /// Held while the class's status is read and written: Gateways are reconciled concurrently.
    class_status: tokio::sync::Mutex<()>,
}

/// Reports the status of GatewayClass `class` and its Gateways until `shutdown`.
pub async fn run(client: Client, class: String, shutdown: Shutdown) {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &gateways());
    let context = Arc::new(Context { client, class, class_status: tokio::sync::Mutex::new(()) });
    info!(class = %context.class, "reporting the status of the GatewayClass and its Gateways");
    Controller::new_with(api, watcher::Config::default(), gateways())
        .graceful_shutdown_on(async move { shutdown.wait().await })
        .run(
            reconcile,
            |_, error, _| {
                warn!(%error, "writing a Gateway's status failed; retrying");
                Action::requeue(Duration::from_secs(5))
            },
            context,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}

async fn reconcile(gateway: Arc<DynamicObject>, context: Arc<Context>) -> Result<Action, ControllerError> {
    if gateway.data["spec"]["gatewayClassName"].as_str() != Some(context.class.as_str()) {
        return Ok(Action::await_change());
    }
    accept_class(&context).await?;
    let namespace = gateway.namespace().unwrap_or_default();
    let name = gateway.name_any();
    let services: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), &namespace, &services());
    let service =
        services.get_opt(&name).await.map_err(|e| ControllerError(format!("Service {namespace}/{name}: {e}")))?;
    let address = service
        .as_ref()
        .and_then(|s| s.data["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(str::to_owned);
    let generation = gateway.metadata.generation.unwrap_or(0);
    let current = &gateway.data["status"];
    let programmed = match &address {
        Some(_) => ("True", "Programmed", format!("served by the waypoint Service {namespace}/{name}")),
        None => ("False", "AddressNotAssigned", format!("no Service {namespace}/{name} with a cluster IP yet")),
    };
    let conditions = [
        condition(current, "Accepted", ("True", "Accepted", "accepted by mesh-waypoint".to_owned()), generation),
        condition(current, "Programmed", programmed, generation),
    ];
    let addresses: Vec<Value> = address.iter().map(|a| json!({"type": "IPAddress", "value": a})).collect();
    let desired = json!({"addresses": addresses, "conditions": conditions});
    if !same_status(current, &desired) {
        let patch = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "status": desired});
        let api: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), &namespace, &gateways());
        api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(|e| ControllerError(format!("Gateway {namespace}/{name}: {e}")))?;
        info!(gateway = %format!("{namespace}/{name}"), address = ?address, "Gateway status written");
    }
    Ok(Action::requeue(RECHECK))
}

/// Marks the GatewayClass accepted, unless it already is.
async fn accept_class(context: &Context) -> Result<(), ControllerError> {
    let _one_at_a_time = context.class_status.lock().await;
    let api: Api<DynamicObject> = Api::all_with(context.client.clone(), &gateway_classes());
    let Some(class) = api
        .get_opt(&context.class)
        .await
        .map_err(|e| ControllerError(format!("GatewayClass {}: {e}", context.class)))?
    else {
        return Ok(());
    };
    let generation = class.metadata.generation.unwrap_or(0);
    let current = &class.data["status"];
    let accepted =
        condition(current, "Accepted", ("True", "Accepted", "handled by mesh-waypoint".to_owned()), generation);
    let desired = json!({"conditions": [accepted]});
    if same_status(current, &desired) {
        return Ok(());
    }
    let patch = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "status": desired});
    api.patch_status(&context.class, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(|e| ControllerError(format!("GatewayClass {}: {e}", context.class)))?;
    Ok(())
}

/// A condition, keeping the transition time it has when its status is unchanged.
fn condition(current: &Value, kind: &str, (status, reason, message): (&str, &str, String), generation: i64) -> Value {
    let previous = current["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == kind));
    let since = previous
        .filter(|p| p["status"] == status)
        .and_then(|p| p["lastTransitionTime"].as_str())
        .map_or_else(|| rfc3339(SystemTime::now()), str::to_owned);
    json!({"type": kind, "status": status, "reason": reason, "message": message,
        "observedGeneration": generation, "lastTransitionTime": since})
}

/// Whether `current` already says what `desired` does (addresses and conditions).
fn same_status(current: &Value, desired: &Value) -> bool {
    let addresses = |v: &Value| v["addresses"].as_array().cloned().unwrap_or_default();
    let conditions = |v: &Value| {
        let mut c: Vec<(String, String, String, String, i64)> = v["conditions"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|c| {
                        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                        (
                            text("type"),
                            text("status"),
                            text("reason"),
                            text("message"),
                            c["observedGeneration"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        c.sort();
        c
    };
    addresses(current) == addresses(desired) && conditions(current) == conditions(desired)
}

/// `2026-12-07T23:45:00Z`, as Kubernetes writes times.
fn rfc3339(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_kubernetes_writes_them() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_686_700)), "2026-12-07T23:38:20Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time_and_is_not_written_again() {
        let current = json!({"conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
            "message": "m", "observedGeneration": 2, "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let kept = condition(&current, "Accepted", ("True", "Accepted", "m".into()), 2);
        assert_eq!(kept["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert!(same_status(&current, &json!({"conditions": [kept]})));
        let flipped = condition(&current, "Accepted", ("False", "Invalid", "m".into()), 2);
        assert_ne!(flipped["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert!(!same_status(&current, &json!({"conditions": [flipped]})));
        let newer = condition(&current, "Accepted", ("True", "Accepted", "m".into()), 3);
        assert!(!same_status(&current, &json!({"conditions": [newer]})), "a new generation is reported");
    }
}
