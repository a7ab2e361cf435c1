//! Flags of `saker rbac who-can`.

use std::path::PathBuf;

use clap::Subcommand;

use super::policy::PolicyFormat;

#[derive(Subcommand)]
pub enum RbacCommand {
    /// List the subjects (users, groups, service accounts) that RBAC objects
    /// let make a request, each with the binding and role that grant it, as
    /// the API server's RBAC authorizer decides (system:masters is always
    /// allowed). Reads RBAC exports (`kubectl get
    /// roles,rolebindings,clusterroles,clusterrolebindings -A -o yaml`),
    /// multi-document YAML, JSON or directories of manifests. Who can read the API server's logs:
    /// `saker rbac who-can get pods/log -n kube-system rbac.yaml`.
    WhoCan(WhoCanArgs),
}

#[derive(clap::Args)]
pub struct WhoCanArgs {
    /// The verb: get, list, watch, create, update, patch, delete, ...
    pub verb: String,
    /// RESOURCE[.GROUP][/SUBRESOURCE] as kubectl spells it (pods/log,
    /// deployments.apps, deployments.apps/scale), or a non-resource URL
    /// (/logs/).
    pub resource: String,
    /// RBAC export files or directories.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The request's namespace; without it, the request is cluster-wide
    /// (only ClusterRoleBindings grant it).
    #[arg(long, short = 'n', value_name = "NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Count RoleBindings of every namespace, each in its own.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// The object's name, for rules limited by resourceNames; without it,
    /// such rules are listed as granting only the names they list.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub name: String,
    #[arg(long, value_enum, default_value_t = PolicyFormat::Text)]
    pub format: PolicyFormat,
}

impl WhoCanArgs {
    pub fn settings(self) -> saker::rbac::who_can::Settings {
        saker::rbac::who_can::Settings {
            json: self.format == PolicyFormat::Json,
            verb: self.verb,
            resource: self.resource,
            namespace: self.namespace,
            all_namespaces: self.all_namespaces,
            name: self.name,
            files: self.files,
        }
    }
}
