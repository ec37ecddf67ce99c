{{/*
Render anything at all? Only an explicit `enabled: false` turns the chart off.
(`default true .Values.enabled` would be wrong: `default` treats `false` as
empty and turns it back into `true`.) A missing key counts as enabled.
*/}}
{{- define "stuck-hr-recovery.enabled" -}}
{{- if or (not (hasKey .Values "enabled")) .Values.enabled -}}true{{- end -}}
{{- end -}}

{{- define "stuck-hr-recovery.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name. Capped at 52 characters: the CronJob controller appends an
11-character suffix to name each Job, and a Job name is at most 63.
*/}}
{{- define "stuck-hr-recovery.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stuck-hr-recovery.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stuck-hr-recovery.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stuck-hr-recovery.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stuck-hr-recovery.labels" -}}
helm.sh/chart: {{ include "stuck-hr-recovery.chart" . }}
{{ include "stuck-hr-recovery.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stuck-hr-recovery.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stuck-hr-recovery.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The image reference: `repository@digest` when a digest is set, else
`repository:tag`. Never `latest`, never an implicit tag.
*/}}
{{- define "stuck-hr-recovery.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else if not $img.tag -}}
{{- fail "image.tag is empty and image.digest is not set: set image.tag to a release version (e.g. --set image.tag=0.1.0) or image.digest to sha256:<64 hex>; this chart never falls back to 'latest'" -}}
{{- else if eq (lower $img.tag) "latest" -}}
{{- fail "image.tag 'latest' is refused: pin a release version or set image.digest" -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $img.tag -}}
{{- end -}}
{{- end -}}

{{/*
Seconds in a duration as the binary's flags take it and the schema allows it:
one or more <number><unit> groups with units d, h, m, s (`90s`, `5m`, `1h30m`).
*/}}
{{- define "stuck-hr-recovery.seconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^([0-9]+[dhms])+$" $d) -}}
{{- fail (printf "%q is not a duration like 30s, 5m or 1h30m" $d) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+[dhms]" $d -1 -}}
{{- $n := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := regexFind "[dhms]$" . -}}
{{- $mul := get (dict "d" 86400 "h" 3600 "m" 60 "s" 1) $unit -}}
{{- $total = add $total (mul $n $mul) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
The Job's activeDeadlineSeconds: derived as timeout + 60 s when unset; an
explicit value must be above the run's --timeout, or rendering fails (the
kubelet would kill the run before it can resume what it suspended).
*/}}
{{- define "stuck-hr-recovery.activeDeadlineSeconds" -}}
{{- $timeout := include "stuck-hr-recovery.seconds" .Values.timeout | atoi -}}
{{- if kindIs "invalid" .Values.activeDeadlineSeconds -}}
{{- add $timeout 60 -}}
{{- else -}}
{{- $ads := .Values.activeDeadlineSeconds | int -}}
{{- if le $ads $timeout -}}
{{- fail (printf "activeDeadlineSeconds (%d) must be above timeout (%s = %ds), or the pod is killed before the run can clean up; leave it empty to derive it" $ads (toString .Values.timeout) $timeout) -}}
{{- end -}}
{{- $ads -}}
{{- end -}}
{{- end -}}

{{/*
Namespaced RBAC needs the namespaces it is scoped to.
*/}}
{{- define "stuck-hr-recovery.checkNamespaced" -}}
{{- if and .Values.rbac.namespaced (not .Values.namespaces) -}}
{{- fail "rbac.namespaced=true needs a non-empty namespaces list: the Roles are created there and the run is scoped to them" -}}
{{- end -}}
{{- end -}}

{{/*
The container args: one flag per SPEC §7 flag, every one explicit so the run
does what values.yaml says whatever the binary's defaults.
*/}}
{{- define "stuck-hr-recovery.args" -}}
- {{ printf "--stuck-threshold=%s" .Values.stuckThreshold | quote }}
- {{ printf "--max-actions=%d" (int .Values.maxActions) | quote }}
- {{ printf "--suspend-wait=%s" .Values.suspendWait | quote }}
- {{ printf "--cooldown=%s" .Values.cooldown | quote }}
- {{ printf "--timeout=%s" .Values.timeout | quote }}
- {{ printf "--dry-run=%s" .Values.dryRun | quote }}
{{- range .Values.namespaces }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- with .Values.selector }}
- {{ printf "--selector=%s" . | quote }}
{{- end }}
- {{ printf "--output=%s" .Values.output | quote }}
- {{ printf "--log-format=%s" .Values.logFormat | quote }}
{{- with .Values.eventsAddr }}
- {{ printf "--events-addr=%s" . | quote }}
{{- end }}
{{- end -}}

{{/*
The permissions the binary needs (SPEC §8), identical to rbac/clusterrole.yaml
(a test compares them). Used by the ClusterRole and by each namespaced Role.
*/}}
{{- define "stuck-hr-recovery.rules" -}}
- apiGroups: ["helm.toolkit.fluxcd.io"]
  resources: ["helmreleases"]
  verbs: ["get", "list", "patch"]
- apiGroups: ["helm.toolkit.fluxcd.io"]
  resources: ["helmreleases/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/*
The binary refuses a zero duration (exit 2, every run): refuse it here instead.
*/}}
{{- define "stuck-hr-recovery.checkDurations" -}}
{{- range $key := list "stuckThreshold" "suspendWait" "cooldown" "timeout" -}}
{{- $v := get $.Values $key -}}
{{- if eq (include "stuck-hr-recovery.seconds" $v) "0" -}}
{{- fail (printf "%s must be above zero (got %q)" $key (toString $v)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
