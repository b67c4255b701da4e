{{- /*
Generated from controller/src/permissions.rs and
vertice_agent::probe::serve::PERMISSIONS; do not edit. Regenerate with
  VERTICE_REGENERATE=1 cargo test -p vertice-controller --test helm_chart
*/}}
{{- define "vertice.controllerClusterRules" }}
- apiGroups: ["vertice.io"]
  resources: ["verticebackups", "verticescalers", "verticefailovers"]
  verbs: ["list", "watch"]
- apiGroups: ["vertice.io"]
  resources: ["verticebackups/status", "verticescalers/status", "verticefailovers/status"]
  verbs: ["patch"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["replicasets/scale"]
  verbs: ["get", "patch"]
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
{{- define "vertice.controllerSecretRules" }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- define "vertice.controllerLeaseRules" }}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "patch"]
{{- end }}
{{- define "vertice.probeRules" }}
- apiGroups: ["vertice.io"]
  resources: ["verticefailovers"]
  verbs: ["list", "watch"]
- apiGroups: ["vertice.io"]
  resources: ["verticefailovers/status"]
  verbs: ["patch"]
{{- end }}
{{- define "vertice.probeSecretRules" }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
