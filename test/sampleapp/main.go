// Command sampleapp is the end-to-end suite's sample Go project: a small
// CLI whose dependency tree is large enough that a warm build cache
// visibly matters. Run without arguments it prints one deterministic line.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"example.com/sampleapp/internal/report"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sampleapp:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "sampleapp",
		Short:         "Print a one-line report about a greeting",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Defaults, then SAMPLEAPP_* variables, then flags set.
			opts, err := report.LoadOptions(os.Environ(), cmd.Flags())
			if err != nil {
				return err
			}
			r, err := report.Build(opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), r.Line())
			return nil
		},
	}
	cmd.Flags().String("name", report.DefaultName, "who to greet")
	cmd.Flags().Bool("verbose", false, "log the steps to stderr")
	return cmd
}
