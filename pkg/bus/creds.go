package bus

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Credentials are one NATS nkey per role: the identities of an embedded
// server's clients. The seeds live in a directory (0700) as <role>.nk
// files (0600) that clients of other processes read (nats.nkey_file);
// the server knows only the public keys.
type Credentials struct {
	dir  string
	keys map[Role]nkeys.KeyPair
}

// SeedFileName is the file of a role's seed in a credentials directory.
func SeedFileName(r Role) string { return string(r) + ".nk" }

// LoadOrCreateCredentials reads the seed of every role from dir, creating
// dir (0700) and any missing seed (0600) first: the first "kaar serve"
// makes them, later ones reuse them. A seed file readable by others is
// refused, as is a file that holds no user seed.
func LoadOrCreateCredentials(dir string) (*Credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials directory %s: %w", dir, err)
	}
	c := &Credentials{dir: dir, keys: map[Role]nkeys.KeyPair{}}
	for _, r := range Roles() {
		path := filepath.Join(dir, SeedFileName(r))
		kp, err := readSeed(path)
		if errors.Is(err, fs.ErrNotExist) {
			kp, err = createSeed(path)
		}
		if err != nil {
			return nil, err
		}
		c.keys[r] = kp
	}
	return c, nil
}

// NewEphemeralCredentials makes a key per role in memory only: an
// embedded server for tests, whose clients all live in this process.
func NewEphemeralCredentials() (*Credentials, error) {
	c := &Credentials{keys: map[Role]nkeys.KeyPair{}}
	for _, r := range Roles() {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, err
		}
		c.keys[r] = kp
	}
	return c, nil
}

// createSeed writes a new seed to path, atomically: a temporary file
// linked into place, so that two processes starting at once agree on one
// seed (the loser reads the winner's) and nobody reads half a file.
func createSeed(path string) (nkeys.KeyPair, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".seed-*")
	if err != nil {
		return nil, fmt.Errorf("create credential %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	_, werr := f.Write(append(seed, '\n'))
	if err := errors.Join(werr, f.Chmod(0o600), f.Close()); err != nil {
		return nil, fmt.Errorf("write credential %s: %w", path, err)
	}
	if err := os.Link(tmp, path); errors.Is(err, fs.ErrExist) {
		return readSeed(path)
	} else if err != nil {
		return nil, fmt.Errorf("create credential %s: %w", path, err)
	}
	return kp, nil
}

func readSeed(path string) (nkeys.KeyPair, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("credential %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credential %s: %w", path, err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("credential %s: not an nkey seed: %w", path, err)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("credential %s: not a user seed (it must start with SU)", path)
	}
	return kp, nil
}

// Dir is the credentials directory; empty for ephemeral credentials.
func (c *Credentials) Dir() string { return c.dir }

// SeedFile is the path of the role's seed, for nats.nkey_file; empty for
// ephemeral credentials.
func (c *Credentials) SeedFile(r Role) string {
	if c.dir == "" {
		return ""
	}
	return filepath.Join(c.dir, SeedFileName(r))
}

// PublicKey is the role's public nkey (the user the server knows).
func (c *Credentials) PublicKey(r Role) string {
	kp, ok := c.keys[r]
	if !ok {
		return ""
	}
	pub, _ := kp.PublicKey()
	return pub
}

// option authenticates a client as the role.
func (c *Credentials) option(r Role) (nats.Option, error) {
	kp, ok := c.keys[r]
	if !ok {
		return nil, fmt.Errorf("no credential for role %q", r)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return nats.Nkey(pub, kp.Sign), nil
}

// nkeyUsers are the server's users: one per role, with its permissions
// (for clients of the JetStream domain, when not empty).
func (c *Credentials) nkeyUsers(domain string) []*server.NkeyUser {
	var out []*server.NkeyUser
	for _, r := range Roles() {
		out = append(out, &server.NkeyUser{Nkey: c.PublicKey(r), Permissions: r.Permissions().InDomain(domain).server()})
	}
	return out
}

// NkeyOption reads a seed file (nats.nkey_file) for a client.
func NkeyOption(path string) (nats.Option, error) {
	kp, err := readSeed(path)
	if err != nil {
		return nil, fmt.Errorf("nats.nkey_file: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	return nats.Nkey(pub, kp.Sign), nil
}
