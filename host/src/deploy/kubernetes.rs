//! Kubernetes: per service a Deployment, a Service and a NetworkPolicy, and one Secret for the
//! variables the ecosystem file interpolates. Built from k8s-openapi's types, not templates.
//!
//! - Each Service answers at the service's planned port and at 80, so `http://api/` (a call
//!   by name) and `http://api:8001` (the variables `up` injects) both resolve through cluster
//!   DNS exactly as through pactown's router.
//! - Probes come from `health_check` (an HTTP GET; a TCP connect without one), resources from
//!   `limits:` in Kubernetes' quantities (`32Mi`, `500m`).
//! - A NetworkPolicy lets a service receive only from its dependents (from anywhere when
//!   nothing depends on it: an entry point) and send only to its dependencies, DNS, and the
//!   ports of its `allowed_hosts`.
//! - Containers run as a non-root user, with a read-only root filesystem, no privilege
//!   escalation, every capability dropped and seccomp `RuntimeDefault`; what pactown writes
//!   (its state, sandboxes, `/tmp`) are `emptyDir`s.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment as K8sDeployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvFromSource, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretEnvSource, SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    APP, BIN, CACHE, Deployment, Files, UID, Unit, cpu_quantity, dns_label, memory_quantity,
};

/// The label that names a service's pods.
const APP_LABEL: &str = "app.kubernetes.io/name";

fn labels(eco: &str, name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), name.to_string()),
        ("app.kubernetes.io/part-of".to_string(), eco.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "pactown".to_string(),
        ),
    ])
}

fn selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(APP_LABEL.to_string(), name.to_string())])),
        ..Default::default()
    }
}

fn meta(d: &Deployment, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels(&dns_label(&d.ecosystem), name)),
        ..Default::default()
    }
}

/// The name of the ecosystem's Secret.
pub fn secret_name(d: &Deployment) -> String {
    format!("{}-env", dns_label(&d.ecosystem))
}

fn probe(u: &Unit, period: i32) -> Probe {
    let port = IntOrString::Int(i32::from(u.port));
    Probe {
        http_get: u.health.as_ref().map(|path| HTTPGetAction {
            path: Some(path.clone()),
            port: port.clone(),
            ..Default::default()
        }),
        tcp_socket: u.health.is_none().then(|| TCPSocketAction {
            port,
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

fn deployment(d: &Deployment, u: &Unit) -> K8sDeployment {
    let mut limits = BTreeMap::new();
    if let Some(m) = u.memory {
        limits.insert("memory".to_string(), Quantity(memory_quantity(m)));
    }
    if let Some(c) = u.cpu {
        limits.insert("cpu".to_string(), Quantity(cpu_quantity(c)));
    }
    let writable = [
        ("state", format!("{APP}/.pactown")),
        ("sandboxes", format!("{APP}/.pactown-sandboxes")),
        ("tmp", "/tmp".to_string()),
    ];
    let container = Container {
        name: u.dns.clone(),
        image: Some(u.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![BIN.to_string()]),
        args: Some(u.args.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(u.port),
            ..Default::default()
        }]),
        env_from: (!d.secrets.values.is_empty() || !d.secrets.unset.is_empty()).then(|| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret_name(d),
                    optional: Some(false),
                }),
                ..Default::default()
            }]
        }),
        env: Some(vec![
            k8s_openapi::api::core::v1::EnvVar {
                name: "PACTOWN_CACHE_DIR".into(),
                value: Some(CACHE.into()),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::EnvVar {
                name: "HOME".into(),
                value: Some("/tmp".into()),
                ..Default::default()
            },
        ]),
        readiness_probe: Some(Probe {
            failure_threshold: Some((u.timeout_s / 2).clamp(3, 120) as i32),
            ..probe(u, 2)
        }),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(u.timeout_s.min(600) as i32),
            failure_threshold: Some(3),
            ..probe(u, 10)
        }),
        resources: (!limits.is_empty()).then(|| ResourceRequirements {
            requests: Some(limits.clone()),
            limits: Some(limits),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(
            writable
                .iter()
                .map(|(n, p)| VolumeMount {
                    name: n.to_string(),
                    mount_path: p.clone(),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    };
    K8sDeployment {
        metadata: meta(d, &u.dns),
        spec: Some(DeploymentSpec {
            replicas: Some(u.replicas as i32),
            selector: selector(&u.dns),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&dns_label(&d.ecosystem), &u.dns)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(u.stop_grace_s as i64 + 5),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        fs_group: Some(UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    volumes: Some(
                        writable
                            .iter()
                            .map(|(n, _)| Volume {
                                name: n.to_string(),
                                empty_dir: Some(EmptyDirVolumeSource::default()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(d: &Deployment, u: &Unit) -> Service {
    let target = IntOrString::Int(i32::from(u.port));
    let mut ports = vec![ServicePort {
        name: Some("http".into()),
        port: i32::from(u.port),
        target_port: Some(target.clone()),
        protocol: Some("TCP".into()),
        ..Default::default()
    }];
    if u.port != 80 {
        ports.push(ServicePort {
            name: Some("by-name".into()),
            port: 80,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    Service {
        metadata: meta(d, &u.dns),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([(APP_LABEL.to_string(), u.dns.clone())])),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn pods(name: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(selector(name)),
        ..Default::default()
    }
}

fn network_policy(d: &Deployment, u: &Unit) -> NetworkPolicy {
    let port_of = |name: &str| d.units.iter().find(|x| x.name == name).map(|x| x.port);
    let ingress = NetworkPolicyIngressRule {
        // An entry point (nothing depends on it) takes traffic from anywhere.
        from: (!u.dependents.is_empty())
            .then(|| u.dependents.iter().map(|n| pods(&dns_label(n))).collect()),
        ports: Some(vec![tcp(u.port)]),
    };
    let mut egress: Vec<NetworkPolicyEgressRule> = u
        .depends_on
        .iter()
        .filter_map(|dep| {
            Some(NetworkPolicyEgressRule {
                to: Some(vec![pods(&dns_label(dep))]),
                ports: Some(vec![tcp(port_of(dep)?)]),
            })
        })
        .collect();
    // DNS, wherever the cluster runs it.
    egress.push(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            ..Default::default()
        }]),
        ports: Some(vec![
            NetworkPolicyPort {
                port: Some(IntOrString::Int(53)),
                protocol: Some("UDP".into()),
                ..Default::default()
            },
            tcp(53),
        ]),
    });
    if !u.egress_ports.is_empty() {
        // `allowed_hosts` are names; a NetworkPolicy knows addresses: their ports, anywhere.
        let mut ports: Vec<u16> = u.egress_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        egress.push(NetworkPolicyEgressRule {
            to: None,
            ports: Some(ports.into_iter().map(tcp).collect()),
        });
    }
    NetworkPolicy {
        metadata: meta(d, &u.dns),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&u.dns)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![ingress]),
            egress: Some(egress),
        }),
    }
}

fn secret(d: &Deployment) -> Option<Secret> {
    if d.secrets.values.is_empty() && d.secrets.unset.is_empty() {
        return None;
    }
    let data: BTreeMap<String, String> = d
        .secrets
        .values
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(d.secrets.unset.iter().map(|k| (k.clone(), String::new())))
        .collect();
    Some(Secret {
        metadata: meta(d, &secret_name(d)),
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Default::default()
    })
}

/// Every object of the deployment, in the order to apply them.
pub fn objects(d: &Deployment) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    if let Some(s) = secret(d) {
        out.push(serde_json::to_value(s).expect("json"));
    }
    for u in &d.units {
        out.push(serde_json::to_value(service(d, u)).expect("json"));
        out.push(serde_json::to_value(deployment(d, u)).expect("json"));
        out.push(serde_json::to_value(network_policy(d, u)).expect("json"));
    }
    out
}

/// The files: `kubernetes.yaml` (every object but the Secret, which holds values) and
/// `secret.yaml` (apply it first; keep it out of version control).
pub fn files(d: &Deployment) -> anyhow::Result<Files> {
    let mut manifest = String::new();
    let mut secret = String::new();
    for o in objects(d) {
        let text = format!("---\n{}", serde_yaml_ng::to_string(&o)?);
        if o["kind"] == "Secret" {
            secret.push_str(&text);
        } else {
            manifest.push_str(&text);
        }
    }
    let mut files = vec![("kubernetes.yaml".into(), manifest)];
    if !secret.is_empty() {
        files.push(("secret.yaml".into(), secret));
    }
    Ok(files)
}
