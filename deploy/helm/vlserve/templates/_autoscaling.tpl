{{/* The scaling behaviour the HPA and KEDA's HPA share: out quickly enough, in slowly (GPU pods start in minutes). */}}
{{- define "vlserve.scalingBehavior" -}}
scaleUp:
  stabilizationWindowSeconds: 0
  policies:
    - type: Pods
      value: {{ .Values.autoscaling.scaleUpPods }}
      periodSeconds: 60
scaleDown:
  stabilizationWindowSeconds: {{ .Values.autoscaling.scaleDownStabilizationSeconds }}
  policies:
    - type: Pods
      value: 1
      periodSeconds: 300
{{- end -}}

{{/* The fleet's queue utilization in PromQL: admitted requests over the engines' places, this release's pods. */}}
{{- define "vlserve.queueUtilizationQuery" -}}
{{- $sel := printf "namespace=%q, job=%q" .Release.Namespace (include "vlserve.fullname" .) -}}
sum(vlserve_admitted_requests{ {{- $sel -}} }) / sum(vlserve_engine_capacity{ {{- $sel -}} } > 0)
{{- end -}}
