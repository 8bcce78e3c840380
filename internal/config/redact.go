package config

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask hides the password of every URL in v, for logs and errors: "nats://u:p@h" becomes
// "nats://u:xxxxx@h", and a user without a password (a NATS token) is hidden whole. It works on
// text that does not parse as a URL too, erring on the side of hiding more: everything between
// "://" and the last "@" of each comma-separated part is user information.
func Mask(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = maskUserinfo(p)
	}
	return strings.Join(parts, ",")
}

const masked = "xxxxx"

func maskUserinfo(p string) string {
	start := 0
	if i := strings.Index(p, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndexByte(p, '@')
	if at < start {
		return p
	}
	userinfo := p[start:at]
	if user, _, ok := strings.Cut(userinfo, ":"); ok {
		return p[:start] + user + ":" + masked + p[at:]
	}
	return p[:start] + masked + p[at:]
}

// urlSecrets returns the secrets in a URL list: each part's password, or its user when it
// has no password (a NATS token), as written and as decoded.
func urlSecrets(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		start := 0
		if i := strings.Index(p, "://"); i >= 0 {
			start = i + len("://")
		}
		at := strings.LastIndexByte(p, '@')
		if at < start {
			continue
		}
		userinfo := p[start:at]
		secret := userinfo
		if _, pw, ok := strings.Cut(userinfo, ":"); ok {
			secret = pw
		}
		if secret == "" {
			continue
		}
		out = append(out, secret)
		if dec, err := url.PathUnescape(secret); err == nil && dec != secret {
			out = append(out, dec)
		}
	}
	return out
}

// Redact returns err with every secret, and the password of any URL, hidden from its text.
// errors.Is and errors.As still see the original error.
func Redact(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := RedactText(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &redacted{err: err, msg: msg}
}

// RedactText hides every secret, and the password of any URL, in s.
func RedactText(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, masked)
		}
	}
	return urlInText.ReplaceAllStringFunc(s, maskUserinfo)
}

// urlInText finds URLs with user information in free text: a scheme, "://", then up to the
// last "@" before a blank or a quote (a password may hold an unescaped "@": hide too much
// rather than too little).
var urlInText = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"']*@`)

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
