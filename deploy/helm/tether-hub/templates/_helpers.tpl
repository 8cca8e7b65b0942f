{{- define "tether-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tether-hub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tether-hub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "tether-hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: hub
{{- end }}

{{- define "tether-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tether-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tether-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tether-hub.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the CA to sign with, or "" when the hub makes its own. */}}
{{- define "tether-hub.caSecret" -}}
{{- if .Values.ca.existingSecret }}
{{- .Values.ca.existingSecret }}
{{- else if and .Values.ca.cert .Values.ca.key }}
{{- printf "%s-ca" (include "tether-hub.fullname" .) }}
{{- end }}
{{- end }}

{{/* The in-cluster DNS name of the Service. */}}
{{- define "tether-hub.serviceHost" -}}
{{- printf "%s.%s.svc" (include "tether-hub.fullname" .) .Release.Namespace }}
{{- end }}

{{/* HOST:PORT agents and clients dial. */}}
{{- define "tether-hub.advertise" -}}
{{- if .Values.hub.advertise }}
{{- .Values.hub.advertise }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "%s:443" .Values.ingress.host }}
{{- else }}
{{- printf "%s:%v" (include "tether-hub.serviceHost" .) .Values.service.port }}
{{- end }}
{{- end }}

{{/* The flags that reach etcd, for migrate and serve. */}}
{{- define "tether-hub.etcdArgs" -}}
- --etcd-endpoints={{ join "," .Values.store.etcd.endpoints }}
- --etcd-prefix={{ .Values.store.etcd.prefix }}
- --etcd-ca=/etcd/ca.crt
- --etcd-cert=/etcd/tls.crt
- --etcd-key=/etcd/tls.key
{{- end -}}
