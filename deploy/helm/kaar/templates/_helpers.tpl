{{/* Name of the release's objects: <release>-kaar, or <release> when it already contains "kaar". */}}
{{- define "kaar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kaar.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "watcher") */}}
{{- define "kaar.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kaar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The NATS URL every service connects to. */}}
{{- define "kaar.natsURL" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" (include "kaar.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- required "nats.url is required when nats.enabled is false" .Values.nats.url -}}
{{- end -}}
{{- end -}}

{{/* The Kubernetes user name of a component's ServiceAccount. */}}
{{- define "kaar.serviceAccountName" -}}
{{- printf "%s-%s" (include "kaar.fullname" .root) .component -}}
{{- end -}}

{{/*
kaar.notifierEnabled is "true" when the notifier runs: when config.notify
configures something or notifier.existingSecret names its Secret (kaar
serve likewise runs it only with notify configured).
*/}}
{{- define "kaar.notifierEnabled" -}}
{{- if or .Values.config.notify .Values.notifier.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The kaar services the chart runs, space-separated. */}}
{{- define "kaar.components" -}}
watcher planner executor mcpgateway{{ if include "kaar.notifierEnabled" . }} notifier{{ end }}
{{- end -}}

{{/*
The notifier's secrets: environment variable (a scalar key of notify) ->
key of notifier.existingSecret. Each is optional: a key the Secret lacks
leaves that part off (Slack without a bot token, no inbound webhook).
*/}}
{{- define "kaar.notifierSecretEnv" -}}
KAAR_NOTIFY_SLACK_BOT_TOKEN: slack-bot-token
KAAR_NOTIFY_SLACK_SIGNING_SECRET: slack-signing-secret
KAAR_NOTIFY_SLACK_APP_TOKEN: slack-app-token
KAAR_NOTIFY_INBOUND_SECRET: inbound-secret
{{- end -}}

{{/* The env entries of the notifier's secrets (the notifier and the provision Job). */}}
{{- define "kaar.notifierSecretEnvList" -}}
{{- range $name, $key := include "kaar.notifierSecretEnv" . | fromYaml }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.notifier.existingSecret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}

{{/* The bus roles, one NATS user each (pkg/bus/roles.go; files/kaar-permissions.conf). */}}
{{- define "kaar.natsRoles" -}}watcher planner executor mcpgateway notifier cli mcp-stdio provisioner{{- end -}}

{{/* kaar's configuration (config.yaml) as the chart renders it. */}}
{{- define "kaar.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "kubernetes" (merge (default dict (get $cfg "kubernetes")) (dict "cluster_name" .Values.clusterName)) -}}
{{- $nats := merge (dict "url" (include "kaar.natsURL" .)) (default dict (get $cfg "nats")) -}}
{{- if and .Values.nats.enabled .Values.nats.cluster.enabled -}}
{{- /* Three clustered nodes: every stream and bucket at R3. */ -}}
{{- $_ := set $nats "replicas" 3 -}}
{{- end -}}
{{- $_ = set $cfg "nats" $nats -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Where the gateway's token file is mounted (mcpgateway.auth.existingSecret). */}}
{{- define "kaar.tokenDir" -}}/etc/kaar-mcp{{- end -}}

{{/*
kaar.validate fails the rendering on values that would install a gateway
or a bus anyone can use, or that would put secrets into the ConfigMap.
*/}}
{{- define "kaar.validate" -}}
{{- $auth := .Values.mcpgateway.auth -}}
{{- if not (or $auth.existingSecret $auth.loopbackOnly) -}}
{{- fail "\n\nmcpgateway.auth: the gateway listens on 0.0.0.0 and refuses to start there without bearer tokens.\nCreate a Secret holding its token file (a YAML list of {token, user, role}; roles read, assistant, approver, admin: one token per person (approver) and one per assistant (assistant)):\n  kubectl -n <namespace> create secret generic kaar-mcp-tokens --from-file=tokens.yaml=./tokens.yaml\nand set mcpgateway.auth.existingSecret=kaar-mcp-tokens,\nor set mcpgateway.auth.loopbackOnly=true (no tokens; reachable only through kubectl port-forward)." -}}
{{- end -}}
{{- if and $auth.existingSecret (not $auth.secretKey) -}}
{{- fail "mcpgateway.auth.secretKey must name the key of the token file in mcpgateway.auth.existingSecret" -}}
{{- end -}}
{{- if dig "mcp" "tokens" nil .Values.config -}}
{{- fail "config.mcp.tokens would be stored in a ConfigMap: put the tokens in a Secret and set mcpgateway.auth.existingSecret" -}}
{{- end -}}
{{- if dig "mcp" "token_file" "" .Values.config -}}
{{- fail "config.mcp.token_file is set by the chart: use mcpgateway.auth.existingSecret" -}}
{{- end -}}
{{- if or (dig "nats" "password" "" .Values.config) (dig "nats" "user" "" .Values.config) -}}
{{- fail "config.nats.user/password would be stored in a ConfigMap and shared by every service: use nats.auth.existingSecret" -}}
{{- end -}}
{{- if and .Values.nats.auth.enabled (not .Values.nats.auth.existingSecret) -}}
{{- fail "\n\nnats.auth: every kaar role logs in to NATS as its own user (kaar-watcher, kaar-planner, kaar-executor, kaar-mcpgateway, kaar-notifier, kaar-cli, kaar-mcp-stdio, kaar-provisioner).\nCreate a Secret with their passwords:\n  kubectl -n <namespace> create secret generic kaar-nats-users \\\n    $(for r in watcher planner executor mcpgateway notifier cli mcp-stdio provisioner; do printf -- '--from-literal=%s=%s ' $r $(openssl rand -hex 24); done)\nand set nats.auth.existingSecret=kaar-nats-users,\nor, with an external NATS server (nats.enabled=false) that authenticates kaar some other way, set nats.auth.enabled=false." -}}
{{- end -}}
{{- $notify := default dict .Values.config.notify -}}
{{- if or (dig "slack" "bot_token" "" $notify) (dig "slack" "signing_secret" "" $notify) (dig "slack" "app_token" "" $notify) (dig "inbound" "secret" "" $notify) -}}
{{- fail "config.notify's Slack tokens and inbound secret would be stored in a ConfigMap: put them in the Secret named by notifier.existingSecret (keys slack-bot-token, slack-signing-secret, slack-app-token, inbound-secret)" -}}
{{- end -}}
{{- if or (get $notify "webhooks") (dig "inbound" "senders" nil $notify) -}}
{{- fail "config.notify.webhooks and config.notify.inbound.senders carry their secrets in the configuration, which the chart keeps in a ConfigMap: the chart supports Slack and the inbound webhook's notify.inbound.secret (from notifier.existingSecret) only" -}}
{{- end -}}
{{- if get $notify "listen" -}}
{{- fail "config.notify.listen is set by the chart: use notifier.port" -}}
{{- end -}}
{{- if and (include "kaar.notifierEnabled" .) (not .Values.notifier.existingSecret) -}}
{{- fail "\n\nnotifier.existingSecret: config.notify is set, so the chart runs the notifier; its Slack tokens and inbound webhook secret come from a Secret, never from config (a ConfigMap):\n  kubectl -n <namespace> create secret generic kaar-notifier \\\n    --from-literal=slack-bot-token=xoxb-... --from-literal=slack-signing-secret=... [--from-literal=slack-app-token=xapp-...] [--from-literal=inbound-secret=$(openssl rand -hex 24)]\nand set notifier.existingSecret=kaar-notifier." -}}
{{- end -}}
{{- $replicas := dig "nats" "replicas" nil .Values.config -}}
{{- if and .Values.nats.enabled .Values.nats.cluster.enabled (not (kindIs "invalid" $replicas)) (ne (int $replicas) 3) -}}
{{- fail (printf "config.nats.replicas=%v with nats.cluster.enabled: the chart's three NATS nodes keep every stream and bucket at 3 replicas; leave config.nats.replicas unset (the chart sets 3)" $replicas) -}}
{{- end -}}
{{- if and .Values.nats.enabled (not .Values.nats.cluster.enabled) (not (kindIs "invalid" $replicas)) (ne (int $replicas) 1) -}}
{{- fail (printf "config.nats.replicas=%v needs a NATS cluster of three JetStream servers, and the chart's NATS is a single node: set nats.cluster.enabled=true (three clustered nodes) or use an external cluster (nats.enabled=false, nats.url)" $replicas) -}}
{{- end -}}
{{- if and .Values.nats.enabled (not .Values.nats.auth.enabled) -}}
{{- fail "nats.auth.enabled=false with the chart's NATS server (nats.enabled) would let anyone who reaches it approve plans and purge the audit trail: name a Secret in nats.auth.existingSecret (one password per role)" -}}
{{- end -}}
{{- end -}}

{{/*
kaar.podAntiAffinity is a pod spec's affinity: the component's own
(<component>.affinity) when set, otherwise, with podAntiAffinity "soft"
or "hard", replicas of one component kept on different nodes (preferred
or required). (dict "root" $ "component" "watcher" "affinity" $v.affinity)
*/}}
{{- define "kaar.podAntiAffinity" -}}
{{- $mode := .root.Values.podAntiAffinity -}}
{{- if .affinity }}
affinity:
  {{- toYaml .affinity | nindent 2 }}
{{- else if eq $mode "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "kaar.selectorLabels" . | nindent 14 }}
{{- else if eq $mode "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "kaar.selectorLabels" . | nindent 12 }}
{{- else if $mode }}
{{- fail (printf "podAntiAffinity %q: use soft (replicas prefer different nodes), hard (they require them) or \"\" (no rule)" $mode) }}
{{- end }}
{{- end -}}
