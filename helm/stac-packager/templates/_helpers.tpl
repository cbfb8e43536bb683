{{/*
Chart name, truncated to the 63 characters Kubernetes allows in names and label values.
*/}}
{{- define "stac-packager.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or just <release> when it already contains the chart name.
*/}}
{{- define "stac-packager.fullname" -}}
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

{{- define "stac-packager.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable for the life of the release (never add anything that changes on upgrade).
*/}}
{{- define "stac-packager.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stac-packager.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: user-code
{{- end }}

{{/*
Kubernetes recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "stac-packager.labels" -}}
helm.sh/chart: {{ include "stac-packager.chart" . }}
{{ include "stac-packager.selectorLabels" . }}
app.kubernetes.io/version: {{ include "stac-packager.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: dagster
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "stac-packager.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stac-packager.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Service name = the `host` of the dagster chart's dagsterWebserver.workspace.servers entry.
*/}}
{{- define "stac-packager.serviceName" -}}
{{- default (include "stac-packager.fullname" .) .Values.service.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stac-packager.settingsConfigMapName" -}}
{{- printf "%s-settings" (include "stac-packager.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stac-packager.settingsPath" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.settingsMountPath) .Values.settingsFileName }}
{{- end }}

{{- define "stac-packager.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
Image reference: <repository>:<tag>, or <repository>:<tag>@<digest> when a digest is pinned.
Also exported as DAGSTER_CURRENT_IMAGE: the image the run launcher starts run pods with.
*/}}
{{- define "stac-packager.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "stac-packager.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Server command line.
*/}}
{{- define "stac-packager.serverArgs" -}}
{{- $cs := .Values.codeServer }}
{{- $args := list }}
{{- if eq $cs.command "grpc" }}
{{- $args = list "dagster" "api" "grpc" }}
{{- else }}
{{- $args = list "dagster" "code-server" "start" }}
{{- end }}
{{- $args = concat $args (list "-h" "0.0.0.0" "-p" (toString $cs.port) "-m" $cs.module "--location-name" $cs.locationName "--log-level" $cs.logLevel) }}
{{- if $cs.workingDirectory }}
{{- $args = concat $args (list "-d" $cs.workingDirectory) }}
{{- end }}
{{- $args = concat $args $cs.extraArgs }}
{{- toJson $args }}
{{- end }}

{{/*
Probe handler: the Dagster gRPC health check against the local server.
*/}}
{{- define "stac-packager.healthCheck" -}}
exec:
  command: ["dagster", "api", "grpc-health-check", "-h", "127.0.0.1", "-p", {{ .Values.codeServer.port | toString | quote }}]
{{- end }}

{{/*
Environment shared by the code server and the run pods it configures (via DAGSTER_CONTAINER_CONTEXT):
the settings path, secretKeyRefs to existing Secrets, and extra env. A YAML list.
*/}}
{{- define "stac-packager.sharedEnv" -}}
- name: STAC_PACKAGER_CONFIG
  value: {{ include "stac-packager.settingsPath" . | quote }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
      {{- if hasKey . "optional" }}
      optional: {{ .optional }}
      {{- end }}
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volume + mount of the settings ConfigMap (also passed to run pods).
*/}}
{{- define "stac-packager.settingsVolume" -}}
name: stac-packager-settings
configMap:
  name: {{ include "stac-packager.settingsConfigMapName" . }}
{{- end }}

{{- define "stac-packager.settingsVolumeMount" -}}
name: stac-packager-settings
mountPath: {{ trimSuffix "/" .Values.settingsMountPath }}
readOnly: true
{{- end }}

{{/*
DAGSTER_CONTAINER_CONTEXT: dagster-k8s container context so that run pods launched by the K8sRunLauncher
(and step pods of k8s_job_executor) inherit this location's settings volume, env and Secrets.
Keys follow dagster_k8s.K8sContainerContext (snake_case).
*/}}
{{- define "stac-packager.containerContext" -}}
{{- $cfg := .Values.includeConfigInLaunchedRuns }}
{{- $k8s := dict
    "namespace" .Release.Namespace
    "image_pull_policy" .Values.image.pullPolicy
    "env" (include "stac-packager.sharedEnv" . | fromYamlArray)
    "volumes" (list (include "stac-packager.settingsVolume" . | fromYaml))
    "volume_mounts" (list (include "stac-packager.settingsVolumeMount" . | fromYaml))
    "labels" (merge (dict "stac-packager/code-location" .Values.codeServer.locationName) $cfg.labels)
}}
{{- with .Values.imagePullSecrets }}
{{- $_ := set $k8s "image_pull_secrets" . }}
{{- end }}
{{- with .Values.envFromSecrets }}
{{- $_ := set $k8s "env_secrets" . }}
{{- end }}
{{- with .Values.envFromConfigMaps }}
{{- $_ := set $k8s "env_config_maps" . }}
{{- end }}
{{- with $cfg.serviceAccountName }}
{{- $_ := set $k8s "service_account_name" . }}
{{- end }}
{{- with $cfg.resources }}
{{- $_ := set $k8s "resources" . }}
{{- end }}
{{- with $cfg.securityContext }}
{{- $_ := set $k8s "security_context" . }}
{{- end }}
{{- with $cfg.runK8sConfig }}
{{- $_ := set $k8s "run_k8s_config" . }}
{{- end }}
{{- dict "k8s" $k8s | toJson }}
{{- end }}

{{/*
Names of every `{env: NAME}` reference in a settings tree, one per line (recursive).
*/}}
{{- define "stac-packager.envRefs" -}}
{{- if kindIs "map" . }}
{{- if and (eq (len .) 1) (hasKey . "env") (kindIs "string" (get . "env")) }}
{{ get . "env" }}
{{- else }}
{{- range $k, $v := . }}
{{- include "stac-packager.envRefs" $v }}
{{- end }}
{{- end }}
{{- else if kindIs "slice" . }}
{{- range . }}
{{- include "stac-packager.envRefs" . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Sorted, de-duplicated list (JSON) of env names referenced by the settings.
*/}}
{{- define "stac-packager.envRefList" -}}
{{- include "stac-packager.envRefs" .Values.settings | splitList "\n" | compact | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
Fail early when the settings reference an env var that nothing provides.
*/}}
{{- define "stac-packager.validateEnvRefs" -}}
{{- if and .Values.validateEnvRefs (not .Values.envFromSecrets) (not .Values.envFromConfigMaps) }}
{{- $provided := list }}
{{- range .Values.secretEnv }}{{ $provided = append $provided .name }}{{ end }}
{{- range .Values.env }}{{ $provided = append $provided .name }}{{ end }}
{{- $missing := list }}
{{- range (include "stac-packager.envRefList" . | fromJsonArray) }}
{{- if not (has . $provided) }}{{ $missing = append $missing . }}{{ end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "settings reference env vars %s that are not provided: add them to secretEnv (secretKeyRef to an existing Secret) or env, list their Secret in envFromSecrets, or set validateEnvRefs=false" (join ", " $missing)) }}
{{- end }}
{{- end }}
{{- end }}
