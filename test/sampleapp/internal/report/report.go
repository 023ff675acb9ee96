// Package report builds sampleapp's one-line report. It deliberately runs
// the greeting through a handful of popular libraries (encoders, loggers,
// a JSON query, text tools) so that building the program compiles a realistic
// number of third-party packages; every step is deterministic.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	burnt "github.com/BurntSushi/toml"
	"github.com/Masterminds/semver/v3"
	"github.com/cespare/xxhash/v2"
	"github.com/dustin/go-humanize"
	"github.com/dustin/go-humanize/english"
	"github.com/fatih/color"
	"github.com/google/uuid"
	"github.com/hashicorp/go-multierror"
	"github.com/pelletier/go-toml/v2"
	"github.com/pkg/errors"
	"github.com/rs/zerolog"
	"github.com/sirupsen/logrus"
	"github.com/tidwall/gjson"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"
)

// Version is the report format's version.
const Version = "1.4.2"

// Greeting is the document that travels through every encoder.
type Greeting struct {
	ID      string   `json:"id" yaml:"id" toml:"id"`
	Name    string   `json:"name" yaml:"name" toml:"name"`
	Words   []string `json:"words" yaml:"words" toml:"words"`
	Version string   `json:"version" yaml:"version" toml:"version"`
}

// Report is the outcome of Build.
type Report struct {
	Greeting Greeting
	Sizes    map[string]int // encoded size per format
	Query    string         // what a query of the JSON encoding found
	Checksum uint64
	Major    uint64
}

// Build runs the greeting through the pipeline.
func Build(opts Options) (*Report, error) {
	name := strings.TrimSpace(opts.Name)
	if name == "" {
		return nil, errors.New("empty name")
	}
	logs := newLoggers(opts.Verbose)

	v, err := semver.NewVersion(Version)
	if err != nil {
		return nil, errors.Wrap(err, "report version")
	}
	title := cases.Title(language.English).String(name)
	g := Greeting{
		ID:      uuid.NewSHA1(uuid.NameSpaceURL, []byte("sampleapp:"+name)).String(),
		Name:    title,
		Words:   strings.Fields(title),
		Version: v.String(),
	}
	logs.logrus.WithFields(logrus.Fields{"id": g.ID, "words": len(g.Words)}).Info("greeting built")

	r := &Report{Greeting: g, Sizes: map[string]int{}, Major: v.Major()}
	var errs *multierror.Error
	encoders := map[string]func(Greeting) ([]byte, error){
		"json": encodeJSON,
		"yaml": encodeYAML,
		"toml": encodeTOML,
	}
	var encoded []byte
	for format, encode := range encoders {
		data, err := encode(g)
		if err != nil {
			errs = multierror.Append(errs, errors.Wrap(err, format))
			continue
		}
		if format == "json" {
			encoded = data
		}
		r.Sizes[format] = len(data)
		r.Checksum ^= xxhash.Sum64(data)
		logs.zero.Debug().Str("format", format).Int("bytes", len(data)).Msg("encoded")
	}
	if err := errs.ErrorOrNil(); err != nil {
		return nil, err
	}

	found, err := query(encoded, g.ID)
	if err != nil {
		return nil, err
	}
	r.Query = found
	logs.logrus.WithField("found", found).Debug("queried")
	return r, nil
}

// Line is the report as one line of text.
func (r *Report) Line() string {
	formats := make([]string, 0, len(r.Sizes))
	total := 0
	for f, n := range r.Sizes {
		formats = append(formats, f)
		total += n
	}
	sort.Strings(formats)
	p := message.NewPrinter(language.English)
	bold := color.New(color.Bold)
	bold.DisableColor()
	return fmt.Sprintf("sampleapp v%d: %s (id %s, %s encoded as %s, query %q, checksum %s)",
		r.Major, bold.Sprint("Hello, "+r.Greeting.Name+"!"), r.Greeting.ID[:8],
		humanize.Bytes(uint64(total)), strings.Join(formats, "+"), r.Query,
		p.Sprintf("%d", r.Checksum%1000000))
}

func encodeJSON(g Greeting) ([]byte, error) {
	return json.Marshal(g)
}

func encodeYAML(g Greeting) ([]byte, error) {
	data, err := yaml.Marshal(g)
	if err != nil {
		return nil, err
	}
	var back Greeting
	if err := yaml.Unmarshal(data, &back); err != nil {
		return nil, err
	}
	if back.ID != g.ID {
		return nil, errors.Errorf("yaml round trip changed the id to %q", back.ID)
	}
	return data, nil
}

// encodeTOML writes with one TOML library and reads back with another.
func encodeTOML(g Greeting) ([]byte, error) {
	data, err := toml.Marshal(g)
	if err != nil {
		return nil, err
	}
	var back Greeting
	if _, err := burnt.Decode(string(data), &back); err != nil {
		return nil, err
	}
	if back.Name != g.Name {
		return nil, errors.Errorf("toml round trip changed the name to %q", back.Name)
	}
	return data, nil
}

// query looks the greeting up in its JSON encoding.
func query(doc []byte, id string) (string, error) {
	if !gjson.ValidBytes(doc) {
		return "", errors.New("invalid JSON encoding")
	}
	res := gjson.GetManyBytes(doc, "id", "words.#")
	if res[0].String() != id {
		return "", errors.Errorf("JSON holds id %q, want %q", res[0].String(), id)
	}
	return english.Plural(int(res[1].Int()), "word", "words"), nil
}

type loggers struct {
	zero   zerolog.Logger
	logrus *logrus.Logger
}

// newLoggers logs to stderr when verbose, else nowhere, so stdout holds
// only the report line.
func newLoggers(verbose bool) loggers {
	var out io.Writer = io.Discard
	l := loggers{logrus: logrus.New()}
	level := zerolog.Disabled
	if verbose {
		out = os.Stderr
		level = zerolog.DebugLevel
		l.logrus.SetLevel(logrus.DebugLevel)
	}
	l.logrus.SetOutput(out)
	l.zero = zerolog.New(zerolog.ConsoleWriter{Out: out, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}).Level(level)
	return l
}
