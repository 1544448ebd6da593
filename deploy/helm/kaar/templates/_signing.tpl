{{/*
Signing keys (pkg/events/sign.go, pkg/svcmain/keys.go). One Secret, made by
`kaar keys init` (<role>.key and <role>.pub for planner, mcpgateway,
notifier, cli and executor), named by signing.existingSecret. Each
Deployment mounts only its part of it at kaar.signingDir:
  planner, mcpgateway, notifier: its own <role>.key, named by
    KAAR_SIGNING_KEY_FILE;
  executor: every <role>.pub and its own executor.key, as the directory
    KAAR_SIGNING_KEY_DIR: it trusts the public keys it finds there and
    never sees another role's private key;
  watcher: nothing (it signs nothing).
cli.key stays with the people who run kaar approve.
*/}}

{{/* Where a service's part of the signing Secret is mounted. */}}
{{- define "kaar.signingDir" -}}/etc/kaar-keys{{- end -}}

{{/* The files of the signing Secret a component mounts, one per line ("" for none). */}}
{{- define "kaar.signingFiles" -}}
{{- if eq . "executor" -}}
planner.pub
mcpgateway.pub
notifier.pub
cli.pub
executor.pub
executor.key
{{- else if has . (list "planner" "mcpgateway" "notifier") -}}
{{ . }}.key
{{- end -}}
{{- end -}}

{{/* kaar.validateSigning fails the rendering without the signing Secret's name. */}}
{{- define "kaar.validateSigning" -}}
{{- if not .Values.signing.existingSecret -}}
{{- fail "\n\nsigning.existingSecret: the planner signs every plan and the gateway every decision; the executor acts only on what keys it trusts have signed.\nCreate the keys and a Secret holding them:\n  KAAR_SIGNING_KEY_DIR=./kaar-keys kaar keys init && kubectl -n <namespace> create secret generic kaar-signing-keys --from-file=./kaar-keys\nand set signing.existingSecret=kaar-signing-keys." -}}
{{- end -}}
{{- if or (dig "signing" "key_file" "" .Values.config) (dig "signing" "key_dir" "" .Values.config) -}}
{{- fail "config.signing.key_file/key_dir are set by the chart per service: use signing.existingSecret" -}}
{{- end -}}
{{- end -}}
