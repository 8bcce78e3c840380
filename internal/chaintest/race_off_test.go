//go:build !race

package chaintest

// raceDetector is whether this test binary was built with -race.
const raceDetector = false
