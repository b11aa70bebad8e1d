//! The string constants of Go's beehive: operations, resource types, context
//! types and the module-exchange names.

/// Operation: insert a resource.
pub const INSERT_OPERATION: &str = "insert";
/// Operation: delete a resource.
pub const DELETE_OPERATION: &str = "delete";
/// Operation: query a resource.
pub const QUERY_OPERATION: &str = "query";
/// Operation: update a resource.
pub const UPDATE_OPERATION: &str = "update";
/// Operation: patch a resource.
pub const PATCH_OPERATION: &str = "patch";
/// Operation: upload a resource.
pub const UPLOAD_OPERATION: &str = "upload";
/// Operation of responses made by [`Message::new_response`](crate::Message::new_response).
pub const RESPONSE_OPERATION: &str = "response";
/// Operation of error responses made by [`Message::new_error`](crate::Message::new_error).
pub const RESPONSE_ERROR_OPERATION: &str = "error";
/// Operation: release a held upgrade.
pub const UNHOLD_UPGRADE_OPERATION: &str = "unhold-upgrade";

/// Resource type: pod.
pub const RESOURCE_TYPE_POD: &str = "pod";
/// Resource type: event.
pub const RESOURCE_TYPE_EVENT: &str = "event";
/// Resource type: configmap.
pub const RESOURCE_TYPE_CONFIGMAP: &str = "configmap";
/// Resource type: service account token.
pub const RESOURCE_TYPE_SERVICE_ACCOUNT_TOKEN: &str = "serviceaccounttoken";
/// Resource type: secret.
pub const RESOURCE_TYPE_SECRET: &str = "secret";
/// Resource type: node.
pub const RESOURCE_TYPE_NODE: &str = "node";
/// Resource type: pod list.
pub const RESOURCE_TYPE_PODLIST: &str = "podlist";
/// Resource type: pod status.
pub const RESOURCE_TYPE_POD_STATUS: &str = "podstatus";
/// Resource type: pod patch.
pub const RESOURCE_TYPE_POD_PATCH: &str = "podpatch";
/// Resource type: node status.
pub const RESOURCE_TYPE_NODE_STATUS: &str = "nodestatus";
/// Resource type: node patch.
pub const RESOURCE_TYPE_NODE_PATCH: &str = "nodepatch";
/// Resource type: rule.
pub const RESOURCE_TYPE_RULE: &str = "rule";
/// Resource type: rule endpoint.
pub const RESOURCE_TYPE_RULE_ENDPOINT: &str = "ruleendpoint";
/// Resource type: rule status.
pub const RESOURCE_TYPE_RULE_STATUS: &str = "rulestatus";
/// Resource type: lease.
pub const RESOURCE_TYPE_LEASE: &str = "lease";
/// Resource type: service account access.
pub const RESOURCE_TYPE_SA_ACCESS: &str = "serviceaccountaccess";
/// Resource type: certificate signing request.
pub const RESOURCE_TYPE_CSR: &str = "certificatesigningrequest";
/// Resource type: the cluster CA certificate.
pub const RESOURCE_TYPE_K8S_CA: &str = "k8s/ca.crt";

/// Context type of the in-process channel backend.
pub const MSG_CTX_TYPE_CHANNEL: &str = "channel";
/// Context type of the socket backend (Go's network name for SOCK_SEQPACKET).
pub const MSG_CTX_TYPE_US: &str = "unixpacket";

/// Resource of the socket module handshake.
pub const RESOURCE_TYPE_MODULE: &str = "module";
/// Operation of the socket module handshake.
pub const OPERATION_TYPE_MODULE: &str = "add";
