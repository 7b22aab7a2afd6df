{{/* Names, labels and the derived values the templates share. */}}

{{- define "vlserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's name, with the chart's unless it holds it already; the job label of the scrape. */}}
{{- define "vlserve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "vlserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "vlserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
vlserve.dev/track: {{ ternary "canary" "stable" .Values.canary.enabled }}
{{- end -}}

{{/* Release-scoped: a canary release's pods never match the stable release's Service, and back. */}}
{{- define "vlserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vlserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "vlserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "vlserve.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret with VLSERVE_ADMIN_KEY and the other secret settings: the chart's, or one the operator made. */}}
{{- define "vlserve.secretName" -}}
{{- default (include "vlserve.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "vlserve.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) $repo -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" $repo .Values.image.tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{- define "vlserve.vllmMode" -}}
{{- if eq .Values.engine.mode "vllm" -}}true{{- end -}}
{{- end -}}

{{/* Extra vllm serve arguments as the one shell-quoted string --vllm-args takes: each one single-quoted. */}}
{{- define "vlserve.vllmArgs" -}}
{{- $quoted := list -}}
{{- range .Values.engine.vllm.extraArgs -}}
{{- $quoted = append $quoted (printf "'%s'" (replace "'" "'\"'\"'" (toString .))) -}}
{{- end -}}
{{- join " " $quoted -}}
{{- end -}}

{{/* Seconds a pod may take to stop: the endpoint-removal pause, vlserve's drain, then the vLLM child's exit. */}}
{{- define "vlserve.terminationGrace" -}}
{{- add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds .Values.shutdown.engineStopSeconds -}}
{{- end -}}

{{- define "vlserve.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "vlserve.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "vlserve.redis.fullname" -}}
{{- printf "%s-redis" (include "vlserve.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* A random secret made on first install and kept on upgrade: lookup reads the one in the cluster. */}}
{{- define "vlserve.keptSecret" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- printf "%s%s" .prefix (randAlphaNum (int .length)) -}}
{{- end -}}
{{- end -}}

{{/* Replicas above one need one key and job database for all: in-cluster PostgreSQL, a URL, or a secret. */}}
{{- define "vlserve.checkSharedDatabase" -}}
{{- $many := or (gt (int .Values.replicaCount) 1) (ne .Values.autoscaling.mode "none") -}}
{{- $shared := or .Values.postgresql.enabled .Values.externalDatabase.url .Values.auth.existingSecret -}}
{{- if and $many (not $shared) -}}
{{- fail "several replicas need a shared database: set postgresql.enabled, externalDatabase.url, or auth.existingSecret with VLSERVE_DATABASE_URL (each replica would otherwise keep its own SQLite file of API keys and jobs)" -}}
{{- end -}}
{{- end -}}

{{- define "vlserve.pull.fullname" -}}
{{- printf "%s-pull" (include "vlserve.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pull Job's mounts: scratch, and the weights claim at /models with the server's subPath (ctx, readOnly). */}}
{{- define "vlserve.pullMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: {{ .ctx.Values.homeDir }}
- name: models
  mountPath: /models
  readOnly: {{ .readOnly }}
  {{- with .ctx.Values.model.storage.subPath }}
  subPath: {{ . }}
  {{- end }}
{{- end -}}

{{/* The pull Job fills a PersistentVolumeClaim of a vllm-mode release. */}}
{{- define "vlserve.checkPull" -}}
{{- if ne .Values.engine.mode "vllm" -}}
{{- fail "pull.enabled fills the weights volume of engine.mode vllm; engine.mode remote has none" -}}
{{- end -}}
{{- if not .Values.model.storage.existingClaim -}}
{{- fail "pull.enabled needs model.storage.existingClaim: the Job fills one claim that every pod mounts; a hostPath is a directory on each node, fill it there (docs/deployment/kubernetes.md)" -}}
{{- end -}}
{{- if not .Values.pull.model -}}
{{- fail "pull.enabled needs pull.model: a catalogue name (qwen3-vl-30b-a3b) or a hub id (Qwen/Qwen3-VL-30B-A3B-Instruct)" -}}
{{- end -}}
{{- end -}}
