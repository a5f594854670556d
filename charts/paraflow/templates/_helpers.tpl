{{- define "paraflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "paraflow.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "paraflow.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "paraflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "paraflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}{{ required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}{{ end }}
{{- end }}

{{- define "paraflow.image" -}}
{{ .repository }}:{{ default $.appVersion .tag }}
{{- end }}

{{/* The rules the operator needs in each namespace it watches; the reasons are in docs/operations.md. */}}
{{- define "paraflow.namespacedRules" -}}
- apiGroups: [paraflow.dev]
  resources: [parallelworkflows]
  # create: a schedule's runs.
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [paraflow.dev]
  resources: [parallelworkflows/status, parallelworkflowschedules/status]
  verbs: [get, patch]
- apiGroups: [paraflow.dev]
  resources: [parallelworkflowschedules]
  verbs: [get, list, watch, patch]
- apiGroups: [batch]
  resources: [jobs]
  # delete: succeeded partition Jobs of a workflow with succeededJobs: Delete.
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, list]
# Read-only: why a child Job's pods do not run (unschedulable, image pull, config errors).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Read-only: the logs of a finished child Job's pods, kept in the run's prefix (spec.logs).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Read-only: what Kueue says of a queued child Job's Workload (why it is not admitted).
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [list]
{{- end }}
