package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/enginetest"
)

// The Docker engine is held to the contract the fake is held to
// (internal/engine/fake), with the test images.
func TestEngineConformance(t *testing.T) {
	enginetest.Run(t, func(*testing.T) engine.Engine { return eng }, enginetest.Options{
		// The process id keeps two runs of the suite on one engine apart.
		Prefix: fmt.Sprintf("e2e-enginetest-%d", os.Getpid()),
		Image:  busyboxImage,
		// busybox runs as root and EXPOSEs nothing.
		ImageInfo: engine.ImageInfo{},
		// No PullableImage: this host has no registry to pull from.
		// Nothing listens on port 1, so no registry serves this.
		UnpullableImage: "localhost:1/e2e-enginetest/none:1",
	})
}
