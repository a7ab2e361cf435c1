//! Kubernetes RBAC objects (`rbac.authorization.k8s.io/v1` Roles,
//! ClusterRoles and their bindings) read from what `kubectl get roles,
//! rolebindings,clusterroles,clusterrolebindings -A -o yaml` prints: a
//! `List` with `items`, multi-document YAML, JSON, or a directory of
//! manifests. Every malformed object is a [`Diagnostic`] at `file:line:col`.
//! [`authorizer`] decides as the API server's RBAC authorizer does,
//! [`aggregate`] fills aggregated ClusterRoles, [`who_can`] is
//! `saker rbac who-can`.

pub mod aggregate;
pub mod authorizer;
pub mod who_can;

mod read;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::{Diagnostic, SourceFile};

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

/// A label selector of an `aggregationRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoleKind {
    Role,
    ClusterRole,
}

/// A Role (namespaced) or ClusterRole (`namespace` empty).
#[derive(Debug, Clone)]
pub struct Role {
    pub kind: RoleKind,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<PolicyRule>,
    /// `aggregationRule.clusterRoleSelectors`, for ClusterRoles.
    pub aggregation: Option<Vec<Selector>>,
}

impl Role {
    /// `Kind/name` or `Kind/namespace/name`, as reports print it.
    pub fn id(&self) -> String {
        object_id(
            match self.kind {
                RoleKind::Role => "Role",
                RoleKind::ClusterRole => "ClusterRole",
            },
            &self.namespace,
            &self.name,
        )
    }
}

/// `Kind/name` for cluster-scoped objects, `Kind/namespace/name` otherwise.
pub fn object_id(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum SubjectKind {
    User,
    Group,
    ServiceAccount,
}

/// A subject of a binding; `namespace` only for service accounts (after
/// defaulting to the RoleBinding's namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject {
    pub kind: SubjectKind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingKind {
    RoleBinding,
    ClusterRoleBinding,
}

/// A RoleBinding (namespaced) or ClusterRoleBinding (`namespace` empty).
#[derive(Debug, Clone)]
pub struct Binding {
    pub kind: BindingKind,
    pub namespace: String,
    pub name: String,
    pub role_kind: RoleKind,
    pub role_name: String,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn id(&self) -> String {
        object_id(
            match self.kind {
                BindingKind::RoleBinding => "RoleBinding",
                BindingKind::ClusterRoleBinding => "ClusterRoleBinding",
            },
            &self.namespace,
            &self.name,
        )
    }

    /// The role it refers to: a Role in its own namespace or a ClusterRole.
    pub fn role_id(&self) -> String {
        match self.role_kind {
            RoleKind::Role => object_id("Role", &self.namespace, &self.role_name),
            RoleKind::ClusterRole => object_id("ClusterRole", "", &self.role_name),
        }
    }
}

/// Every RBAC object read, in input order.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub roles: Vec<Role>,
    pub bindings: Vec<Binding>,
}

/// Failures to read RBAC input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A file or directory that cannot be read (`who-can get pods nope.yaml`).
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Objects that are not what the API server would accept (a binding
    /// without `roleRef`, a rule without `verbs`, ...): every one found.
    #[error("{} problem(s) in the RBAC objects", .0.len())]
    Malformed(Vec<Diagnostic>),
}

impl Objects {
    /// Reads objects from texts already loaded; all problems are returned.
    pub fn parse(files: &[Arc<SourceFile>]) -> (Objects, Vec<Diagnostic>) {
        let mut objects = Objects::default();
        let mut diags = Vec::new();
        for f in files {
            read::read_file(f, &mut objects, &mut diags);
        }
        (objects, diags)
    }

    /// Reads files and directories (recursively: `*.yaml`, `*.yml`,
    /// `*.json`, in name order). Any error diagnostic fails the whole read:
    /// an answer from part of the RBAC objects would be wrong.
    pub fn load(paths: &[PathBuf]) -> Result<(Objects, Vec<Diagnostic>), ReadError> {
        let mut files = Vec::new();
        for p in paths {
            collect(p, &mut files)?;
        }
        let (objects, diags) = Objects::parse(&files);
        if diags.iter().any(Diagnostic::is_error) {
            return Err(ReadError::Malformed(diags));
        }
        Ok((objects, diags))
    }
}

fn collect(path: &Path, out: &mut Vec<Arc<SourceFile>>) -> Result<(), ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort();
        for e in entries {
            let manifest = e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
            if e.is_dir() || manifest {
                collect(&e, out)?;
            }
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    out.push(Arc::new(SourceFile {
        name: path.display().to_string(),
        text,
    }));
    Ok(())
}
