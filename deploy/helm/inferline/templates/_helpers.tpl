{{/* Names: <fullname>-<component>; fullname is at most 40 characters so every Service name stays a DNS label. */}}
{{- define "inferline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "inferline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "inferline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "inferline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "inferline.labels" -}}
helm.sh/chart: {{ include "inferline.chart" . }}
{{ include "inferline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inferline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* An image reference: repository:tag, or repository:tag@digest. */}}
{{- define "inferline.image" -}}
{{- $tag := required "an image needs an exact `tag` (never latest)" .tag -}}
{{- if eq (toString $tag) "latest" -}}{{- fail (printf "image %s:latest is not pinned: set an exact tag" .repository) -}}{{- end -}}
{{- if .digest -}}{{ .repository }}:{{ $tag }}@{{ .digest }}{{- else -}}{{ .repository }}:{{ $tag }}{{- end -}}
{{- end -}}

{{/* Per engine: <fullname>-<engine.name>. Call with (dict "root" $ "engine" $e). */}}
{{- define "inferline.engineFullname" -}}
{{- printf "%s-%s" (include "inferline.fullname" .root) .engine.name -}}
{{- end -}}

{{- define "inferline.engineServiceName" -}}
{{- printf "%s-engine" (include "inferline.engineFullname" .) -}}
{{- end -}}

{{- define "inferline.engineSelectorLabels" -}}
{{ include "inferline.selectorLabels" .root }}
app.kubernetes.io/component: engine
inferline.dev/engine: {{ .engine.name }}
{{- end -}}

{{- define "inferline.engineLabels" -}}
{{ include "inferline.labels" .root }}
app.kubernetes.io/component: engine
inferline.dev/engine: {{ .engine.name }}
{{- end -}}

{{- define "inferline.gatewaySelectorLabels" -}}
{{ include "inferline.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "inferline.gatewayLabels" -}}
{{ include "inferline.labels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "inferline.redisUrl" -}}
{{- if eq .Values.redis.mode "inChart" -}}
redis://{{ include "inferline.fullname" . }}-redis.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:6379/0
{{- else -}}
{{- required "redis.mode external needs redis.url" .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/* The engine's HF_HOME-holding volume and where the weights cache is mounted. */}}
{{- define "inferline.engineClaimName" -}}
{{- if .engine.modelCache.existingClaim -}}{{ .engine.modelCache.existingClaim }}{{- else -}}{{ include "inferline.engineFullname" . }}-model-cache{{- end -}}
{{- end -}}

{{/*
The gateway's config, rendered from gateway.config (the inferline YAML) plus what only the chart knows:
listen on 0.0.0.0:<gateway.port>; limits (and a Redis cache) in the chart's Redis; and for each model
that has engines, `discovery` of their headless Service, with the engines' own limits (same values as
their vLLM arguments, so the two cannot disagree).
*/}}
{{- define "inferline.gatewayConfig" -}}
{{- $root := . -}}
{{- $cfg := deepCopy (.Values.gateway.config | default dict) -}}
{{- $server := deepCopy ($cfg.server | default dict) -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "port" (int .Values.gateway.port) -}}
{{- $_ := set $cfg "server" $server -}}
{{- if ne .Values.redis.mode "none" -}}
{{- $limits := deepCopy ($cfg.limits | default dict) -}}
{{- $_ := set $limits "store" "redis" -}}
{{- $_ := set $limits "redis_url" (include "inferline.redisUrl" .) -}}
{{- $_ := set $cfg "limits" $limits -}}
{{- $cache := deepCopy ($cfg.cache | default dict) -}}
{{- if eq (toString ($cache.store | default "memory")) "redis" -}}
{{- $_ := set $cache "redis_url" (include "inferline.redisUrl" .) -}}
{{- $_ := set $cfg "cache" $cache -}}
{{- end -}}
{{- end -}}
{{- $models := list -}}
{{- $modelNames := list -}}
{{- range $orig := ($cfg.models | default list) -}}
{{- $m := deepCopy $orig -}}
{{- $modelNames = append $modelNames $m.name -}}
{{- range $e := $root.Values.engines -}}
{{- if eq $e.model $m.name -}}
{{- $ctx := dict "root" $root "engine" $e -}}
{{- $d := dict "dns_name" (printf "%s.%s.svc.%s" (include "inferline.engineServiceName" $ctx) $root.Release.Namespace $root.Values.clusterDomain) -}}
{{- $_ := set $d "port" (int $e.port) -}}
{{- $_ := set $d "kind" "vllm" -}}
{{- $_ := set $d "interval_s" $e.discovery.intervalSeconds -}}
{{- $_ := set $d "upstream_model" $e.servedModelName -}}
{{- $_ := set $d "max_num_seqs" (int $e.maxNumSeqs) -}}
{{- $_ := set $d "kv_admit_ratio" $e.kvAdmitRatio -}}
{{- $_ := set $d "scheduling_priority" (eq $e.schedulingPolicy "priority") -}}
{{- $_ := set $m "discovery" $d -}}
{{- end -}}
{{- end -}}
{{- $models = append $models $m -}}
{{- end -}}
{{- range $i, $e := .Values.engines -}}
{{- if not (has $e.model $modelNames) -}}
{{- fail (printf "engines[%d] (%s) serves model %q, which is not in gateway.config.models (%s)" $i $e.name $e.model (join ", " $modelNames)) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "models" $models -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* True when a CRD's API is served, or when --api-versions says so (offline rendering). */}}
{{- define "inferline.hasServiceMonitor" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" -}}true{{- end -}}
{{- end -}}
{{- define "inferline.hasPrometheusRule" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule" -}}true{{- end -}}
{{- end -}}
{{- define "inferline.hasScaledObject" -}}
{{- if .Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject" -}}true{{- end -}}
{{- end -}}

{{/* A metric target as a milli-quantity: 75 -> "75000m", 0.8 -> "800m" (exact for any decimal value). */}}
{{- define "inferline.milli" -}}
{{- printf "%dm" (int (round (mulf . 1000.0) 0)) -}}
{{- end -}}

{{/* The HPA behavior of an engine (also KEDA's advanced.horizontalPodAutoscalerConfig.behavior). */}}
{{- define "inferline.behavior" -}}
{{- $b := .engine.autoscaling.behavior -}}
scaleUp:
  stabilizationWindowSeconds: {{ $b.scaleUp.stabilizationWindowSeconds }}
  selectPolicy: {{ $b.scaleUp.selectPolicy }}
  policies:
    {{- toYaml $b.scaleUp.policies | nindent 4 }}
scaleDown:
  stabilizationWindowSeconds: {{ $b.scaleDown.stabilizationWindowSeconds }}
  selectPolicy: {{ $b.scaleDown.selectPolicy }}
  policies:
    {{- toYaml $b.scaleDown.policies | nindent 4 }}
  {{- $gpu := .engine.autoscaling.metrics.gpuUtilization }}
  {{- if and .tolerance $gpu.enabled (gt (float64 $gpu.scaleDownBelow) 0.0) }}
  # keep engines until utilization is below {{ $gpu.scaleDownBelow }}% (target {{ $gpu.target }}%): 1 - {{ $gpu.scaleDownBelow }}/{{ $gpu.target }}
  # (Kubernetes >= 1.33, HPAConfigurableTolerance feature gate; beta and on by default from 1.35)
  tolerance: {{ include "inferline.milli" (subf 1.0 (divf $gpu.scaleDownBelow $gpu.target)) | quote }}
  {{- end }}
{{- end -}}
