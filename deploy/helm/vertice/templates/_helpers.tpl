{{/* Names and labels shared by the templates. */}}
{{- define "vertice.labels" -}}
app.kubernetes.io/part-of: vertice
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "vertice.image" -}}
{{- $tag := .image.tag | default .chart.AppVersion -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end }}

{{- define "vertice.controllerImage" -}}
{{- include "vertice.image" (dict "image" .Values.image.controller "chart" .Chart) -}}
{{- end }}

{{- define "vertice.agentImage" -}}
{{- include "vertice.image" (dict "image" .Values.image.agent "chart" .Chart) -}}
{{- end }}

{{/* The pod and container security settings of deploy/base. */}}
{{- define "vertice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "vertice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
Namespaces where the controller and the probe runner may read Secrets, as a
JSON list: rbac.secretNamespaces, else the one watched namespace, else none
(an empty list means the ClusterRole grants it everywhere).
*/}}
{{- define "vertice.secretNamespaces" -}}
{{- if .Values.rbac.secretNamespaces -}}
{{ toJson .Values.rbac.secretNamespaces }}
{{- else if .Values.controller.watchNamespace -}}
{{ toJson (list .Values.controller.watchNamespace) }}
{{- else -}}
[]
{{- end -}}
{{- end }}
