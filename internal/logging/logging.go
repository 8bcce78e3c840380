// Package logging builds the process's slog logger from LOG_FORMAT (text|json) and LOG_LEVEL
// (debug|info|warn|error).
package logging

import (
	"io"
	"log/slog"

	"github.com/breakerchain/breakerchain/internal/config"
)

// New returns the logger the environment asks for, writing to w.
func New(w io.Writer, lookup config.Lookup) (*slog.Logger, slog.Level, error) {
	s := config.NewSource("", lookup)
	format := s.OneOf("LOG_FORMAT", "text", "text", "json")
	var level slog.Level
	switch s.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error") {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	if err := s.Err(); err != nil {
		return nil, level, err
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level, nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), level, nil
}
