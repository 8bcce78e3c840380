package service

import (
	"testing"
	"time"
)

// Every timeout of the HTTP server is set: a client that sends its headers or body slowly, reads
// slowly or idles is cut off, and headers are bounded.
func TestServerTimeouts(t *testing.T) {
	s := newHTTPServer(nil)
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": s.ReadHeaderTimeout, "ReadTimeout": s.ReadTimeout,
		"WriteTimeout": s.WriteTimeout, "IdleTimeout": s.IdleTimeout,
	} {
		if d <= 0 || d > time.Minute {
			t.Errorf("%s = %s, want set, at most a minute", name, d)
		}
	}
	if s.ReadHeaderTimeout > s.ReadTimeout {
		t.Errorf("ReadHeaderTimeout %s > ReadTimeout %s", s.ReadHeaderTimeout, s.ReadTimeout)
	}
	if s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes = %d, want set below net/http's 1 MiB default", s.MaxHeaderBytes)
	}
}
