package plumbing

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/messaging"
)

// ConnectNATS connects a service to NATS as its settings say, reconnecting forever.
func ConnectNATS(cfg config.Settings, log *slog.Logger) (*nats.Conn, error) {
	return connect(cfg, cfg.NATS, cfg.ID, "NATS_USER and NATS_PASSWORD, NATS_CREDS or NATS_CA", log)
}

// ConnectQueue connects as the service's queue identity (NATS_QUEUE_…), for its JetStream
// state: another user, in an account of its own where no other user's message or reply can land
// (deploy/nats.conf). Without one (cfg.NATSQueue not set) it connects as the service: what
// breakerchain apply-queue changes the queue through.
func ConnectQueue(cfg config.Settings, log *slog.Logger) (*nats.Conn, error) {
	if !cfg.NATSQueue.Set() {
		return ConnectNATS(cfg, log)
	}
	return connect(cfg, cfg.NATSQueue, cfg.ID+" queue", "NATS_QUEUE_USER and NATS_QUEUE_PASSWORD, NATS_QUEUE_CREDS or NATS_CA",
		log.With("connection", "queue"))
}

// connect connects to cfg's NATS as auth, named name; hint names the variables to check when
// the server refuses.
func connect(cfg config.Settings, auth config.NATSAuth, name, hint string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.CustomInboxPrefix(messaging.InboxPrefix(cfg.Name)),
		// Reconnect forever, with jittered backoff; requests meanwhile fail fast and count
		// against the circuit, which is what it is for.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				log.Warn("NATS disconnected", "err", config.Redact(err, cfg.Secrets()...))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
		// Permission violations arrive here: the server refused a publish or a subscription.
		nats.ErrorHandler(func(_ *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			log.Error("NATS error", "subject", subj, "err", config.Redact(err, cfg.Secrets()...))
		}),
	}
	switch a := auth; {
	case a.Creds != "":
		opts = append(opts, nats.UserCredentials(a.Creds))
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if cfg.NATS.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.NATS.CA))
	}
	// A first try that may fail: refused credentials or an untrusted certificate will not get
	// better by retrying, so they stop the service at start with a clear line. A server that is
	// not there yet is waited for (RetryOnFailedConnect), as before.
	nc, err := nats.Connect(cfg.NatsURL, opts...)
	if err != nil && !refused(err) {
		nc, err = nats.Connect(cfg.NatsURL, append(opts, nats.RetryOnFailedConnect(true))...)
	}
	if err != nil {
		if refused(err) {
			return nil, fmt.Errorf("nats %s: %w (check %s)", config.Mask(cfg.NatsURL), err, hint)
		}
		return nil, fmt.Errorf("nats %s: %w", config.Mask(cfg.NatsURL), err)
	}
	return nc, nil
}

// refused tells whether a NATS connection failed for a reason retrying cannot fix: the server
// refused the credentials, or the TLS handshake failed.
func refused(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		tlsRecord tls.RecordHeaderError
		tlsAlert  tls.AlertError
	)
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &tlsRecord) || errors.As(err, &tlsAlert)
}

// Drain lets pending replies out before closing the connection, within ctx.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if !nc.IsConnected() {
		nc.Close() // lost or reconnecting: there is nothing to drain through
		return nil
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return fmt.Errorf("nats drain: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("nats drain: %w", ctx.Err())
	}
}
