package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// kernelSpec is one kernel of the matrix, fetched from Debian's archive.
type kernelSpec struct {
	// Name is what -kernels selects and what the payload sees as
	// KERNEL_NAME.
	Name string
	// Suite is the Debian suite that holds the package ("bookworm",
	// "bookworm-backports", "bullseye-security", ...).
	Suite string
	// Package is an exact package name, a metapackage such as
	// linux-image-amd64 (followed to the linux-image-<abi> it depends on), or
	// a pattern whose '*' stands for one or more characters other than '-'
	// (so "linux-image-5.10.0-*-amd64" matches the current ABI but not the
	// cloud or rt flavours). The newest match wins.
	Package string
}

// kernelTable lists the kernels the matrix knows. Adding a kernel is one line.
var kernelTable = []kernelSpec{
	{Name: "5.10", Suite: "bullseye", Package: "linux-image-5.10.0-*-amd64"},
	{Name: "6.1", Suite: "bookworm", Package: "linux-image-amd64"},
	{Name: "6.12", Suite: "trixie", Package: "linux-image-amd64"},
}

// hostEntry is the -kernels name that runs the payload on the host kernel.
const hostEntry = "host"

// debianKeyring is shipped by debian-archive-keyring (always installed on
// Debian) and holds the keys of every supported release, so the archives we
// add are verified without touching the host's trusted keys.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// fetchedKernel is a kernel package extracted in the cache. It is stored as
// state.json so that a later run needs no network at all.
type fetchedKernel struct {
	Package string `json:"package"`
	Version string `json:"version"`
	// Root is the extracted package tree.
	Root string `json:"root"`
	// Release is the kernel's uname -r (the suffix of /boot/vmlinuz-*).
	Release string `json:"release"`
	// Vmlinuz, Config and ModulesDir are paths inside Root.
	Vmlinuz    string `json:"vmlinuz"`
	Config     string `json:"config,omitempty"`
	ModulesDir string `json:"modules_dir,omitempty"`
}

// aptRepo is one Debian suite set up for apt with its own sources list,
// state and cache below the vmtest cache, so that nothing of the host's apt
// configuration is read or changed.
type aptRepo struct {
	suite string
	dir   string
	ready bool // apt-get update has run in this process
}

// cache owns the on-disk cache of apt state and extracted packages.
type cache struct {
	dir     string
	refresh bool
	repos   map[string]*aptRepo
	log     func(format string, args ...any)
}

func newCache(dir string, refresh bool, logf func(string, ...any)) (*cache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cache %s: %w", dir, err)
	}
	return &cache{dir: dir, refresh: refresh, repos: map[string]*aptRepo{}, log: logf}, nil
}

// lock serialises vmtest runs on the same cache for their whole duration:
// two apt-get updates on one state directory would corrupt each other, and a
// -refresh replaces kernel trees another run may be packing from.
func (c *cache) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	c.log("waiting for another vmtest run to release %s", c.dir)
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking cache: %w", err)
	}
	return func() { f.Close() }, nil
}

// repo returns the apt setup for a suite, creating its files on first use.
func (c *cache) repo(suite string) (*aptRepo, error) {
	if r, ok := c.repos[suite]; ok {
		return r, nil
	}
	dir := filepath.Join(c.dir, "apt", suite)
	for _, d := range []string{"state/lists/partial", "cache/archives/partial", "conf.d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	uri := "http://deb.debian.org/debian"
	if strings.HasSuffix(suite, "-security") {
		uri = "http://deb.debian.org/debian-security"
	}
	sources := fmt.Sprintf("deb [signed-by=%s] %s %s main\n", debianKeyring, uri, suite)
	// APT_CONFIG points at this file. It stops apt from reading the host's
	// apt.conf and apt.conf.d: their hooks (appstream, packagekit, docker's
	// cache cleaner) have no business running for a private download.
	// Compressed indexes keep each suite's state at ~10 MB instead of ~90.
	conf := fmt.Sprintf(`Dir::Etc::Parts "%s";
Dir::Etc::Main "/dev/null";
Acquire::Languages "none";
Acquire::GzipIndexes "true";
Acquire::CompressionTypes::Order:: "gz";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
`, filepath.Join(dir, "conf.d"))
	files := map[string]string{"sources.list": sources, "apt.conf": conf, "status": ""}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	r := &aptRepo{suite: suite, dir: dir}
	c.repos[suite] = r
	return r, nil
}

// apt runs an apt tool against the repo's private configuration.
func (r *aptRepo) apt(workDir, tool string, args ...string) ([]byte, error) {
	full := []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(r.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State=" + filepath.Join(r.dir, "state"),
		"-o", "Dir::State::status=" + filepath.Join(r.dir, "status"),
		"-o", "Dir::Cache=" + filepath.Join(r.dir, "cache"),
		"-q",
	}
	cmd := exec.Command(tool, append(full, args...)...)
	cmd.Dir = workDir
	cmd.Env = append(os.Environ(), "APT_CONFIG="+filepath.Join(r.dir, "apt.conf"), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, lastLines(stderr.String(), 5))
	}
	return out, nil
}

func (r *aptRepo) update() error {
	if r.ready {
		return nil
	}
	// Without --error-on=any a failed download is only a warning and the
	// real error would surface later as a baffling "no packages found".
	if _, err := r.apt(r.dir, "apt-get", "update", "--error-on=any"); err != nil {
		return fmt.Errorf("updating package lists for %s: %w", r.suite, err)
	}
	r.ready = true
	return nil
}

// show returns the fields of the candidate version of a package.
func (r *aptRepo) show(pkg string) (map[string]string, error) {
	out, err := r.apt(r.dir, "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break // only the first stanza: the candidate
		}
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	if fields["Package"] == "" {
		return nil, fmt.Errorf("package %s not found in %s", pkg, r.suite)
	}
	return fields, nil
}

var abiPackage = regexp.MustCompile(`^linux-image-[0-9][^ ,|]*`)

// resolve turns a kernelSpec's Package into the exact package to download.
func (r *aptRepo) resolve(spec string) (pkg, version string, err error) {
	pkg = spec
	if strings.Contains(spec, "*") {
		if pkg, err = r.match(spec); err != nil {
			return "", "", err
		}
	}
	fields, err := r.show(pkg)
	if err != nil {
		return "", "", err
	}
	// A metapackage carries no kernel: follow its dependency to the
	// versioned image package, which is what "the current ABI" means.
	if !abiPackage.MatchString(pkg) {
		for _, dep := range strings.Split(fields["Depends"], ",") {
			if m := abiPackage.FindString(strings.TrimSpace(dep)); m != "" {
				pkg = m
				if fields, err = r.show(pkg); err != nil {
					return "", "", err
				}
				break
			}
		}
	}
	return pkg, fields["Version"], nil
}

// match finds the newest package whose name matches a '*' pattern.
func (r *aptRepo) match(pattern string) (string, error) {
	prefix, _, _ := strings.Cut(pattern, "*")
	re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, `[^-]+`) + "$")
	out, err := r.apt(r.dir, "apt-cache", "pkgnames", prefix)
	if err != nil {
		return "", err
	}
	var names []string
	for _, n := range strings.Fields(string(out)) {
		if re.MatchString(n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no package matches %s in %s", pattern, r.suite)
	}
	sort.Strings(names)
	best, bestVersion := "", ""
	for _, n := range names {
		f, err := r.show(n)
		if err != nil {
			continue // a virtual or vanished name: not a candidate
		}
		if best == "" || versionLess(bestVersion, f["Version"]) {
			best, bestVersion = n, f["Version"]
		}
	}
	if best == "" {
		return "", fmt.Errorf("no installable package matches %s in %s", pattern, r.suite)
	}
	return best, nil
}

// versionLess compares Debian versions the way dpkg does, by asking dpkg:
// epochs, tildes and revisions make a home-grown comparison a liability.
func versionLess(a, b string) bool {
	return exec.Command("dpkg", "--compare-versions", a, "lt", b).Run() == nil
}

// fetch returns the extracted package for spec, downloading it only when
// the cache has nothing for this entry or -refresh found a newer version.
func (c *cache) fetchKernel(spec kernelSpec) (*fetchedKernel, error) {
	dir := filepath.Join(c.dir, "kernels", spec.Name)
	statePath := filepath.Join(dir, "state.json")
	var cached *fetchedKernel
	if b, err := os.ReadFile(statePath); err == nil {
		var k fetchedKernel
		if json.Unmarshal(b, &k) == nil && fileExists(filepath.Join(k.Root, k.Vmlinuz)) {
			cached = &k
		}
	}
	if cached != nil && !c.refresh {
		return cached, nil
	}

	repo, err := c.repo(spec.Suite)
	if err != nil {
		return nil, err
	}
	pkg, version, err := func() (string, string, error) {
		if err := repo.update(); err != nil {
			return "", "", err
		}
		return repo.resolve(spec.Package)
	}()
	if err != nil {
		if cached != nil {
			c.log("%s: refresh failed, using cached %s %s: %v", spec.Name, cached.Package, cached.Version, err)
			return cached, nil
		}
		return nil, fmt.Errorf("resolving %s in %s: %w", spec.Package, spec.Suite, err)
	}
	if cached != nil && cached.Package == pkg && cached.Version == version {
		return cached, nil
	}

	root, err := c.downloadAndExtract(repo, pkg, version, dir)
	if err != nil {
		return nil, err
	}
	k, err := inspectKernelTree(root)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", pkg, version, err)
	}
	k.Package, k.Version = pkg, version
	b, _ := json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(statePath, b, 0o644); err != nil {
		return nil, err
	}
	if cached != nil && cached.Root != k.Root {
		os.RemoveAll(cached.Root)
	}
	return k, nil
}

// fetchTool returns the extracted tree of a non-kernel package (busybox-static
// when the host has no static busybox), cached the same way.
func (c *cache) fetchTool(suite, pkg string) (string, error) {
	dir := filepath.Join(c.dir, "tools", pkg)
	marker := filepath.Join(dir, "root.txt")
	if b, err := os.ReadFile(marker); err == nil && !c.refresh {
		if root := strings.TrimSpace(string(b)); dirExists(root) {
			return root, nil
		}
	}
	repo, err := c.repo(suite)
	if err != nil {
		return "", err
	}
	if err := repo.update(); err != nil {
		return "", err
	}
	name, version, err := repo.resolve(pkg)
	if err != nil {
		return "", err
	}
	root, err := c.downloadAndExtract(repo, name, version, dir)
	if err != nil {
		return "", err
	}
	return root, os.WriteFile(marker, []byte(root+"\n"), 0o644)
}

// downloadAndExtract fetches one .deb with apt-get download and unpacks it
// with dpkg-deb -x into dir/root-<version>. Nothing is installed: the tree
// only ever serves as a source of files for the guests. The .deb is removed
// afterwards since the extracted tree is what later runs reuse.
func (c *cache) downloadAndExtract(repo *aptRepo, pkg, version, dir string) (string, error) {
	dl := filepath.Join(dir, "download")
	os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(dl)
	c.log("downloading %s %s from %s", pkg, version, repo.suite)
	if _, err := repo.apt(dl, "apt-get", "download", pkg+"="+version); err != nil {
		return "", fmt.Errorf("downloading %s: %w", pkg, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("downloading %s: expected one .deb, found %d", pkg, len(debs))
	}
	root := filepath.Join(dir, "root-"+sanitize(version))
	tmp := root + ".partial"
	os.RemoveAll(tmp)
	os.RemoveAll(root)
	c.log("extracting %s", filepath.Base(debs[0]))
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("extracting %s: %w: %s", debs[0], err, lastLines(string(out), 5))
	}
	// The rename makes a half-extracted tree impossible to mistake for a
	// complete one after an interrupted run.
	if err := os.Rename(tmp, root); err != nil {
		return "", err
	}
	return root, nil
}

// inspectKernelTree finds the kernel image, its config and modules in an
// extracted linux-image package. Packages before Debian's /usr merge ship
// modules in lib/modules, later ones in usr/lib/modules.
func inspectKernelTree(root string) (*fetchedKernel, error) {
	images, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return nil, fmt.Errorf("expected one boot/vmlinuz-* in the package, found %d", len(images))
	}
	release := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	k := &fetchedKernel{Root: root, Release: release, Vmlinuz: filepath.Join("boot", "vmlinuz-"+release)}
	if fileExists(filepath.Join(root, "boot", "config-"+release)) {
		k.Config = filepath.Join("boot", "config-"+release)
	}
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		if dirExists(filepath.Join(root, d, release)) {
			k.ModulesDir = filepath.Join(d, release)
			break
		}
	}
	return k, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ':' {
			return '_'
		}
		return r
	}, s)
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// lastLines returns the last n non-empty lines of s, joined by " | ", for
// error messages that must stay on one line.
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// errUnknownKernel is returned for a -kernels name that is not in the table.
var errUnknownKernel = errors.New("unknown kernel")

// selectKernels maps -kernels names to table entries, keeping their order.
func selectKernels(list string) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" || seen[n] {
			continue
		}
		if n != hostEntry && lookupKernel(n) == nil {
			var known []string
			for _, k := range kernelTable {
				known = append(known, k.Name)
			}
			return nil, fmt.Errorf("%w %q (known: %s, %s)", errUnknownKernel, n, strings.Join(known, ", "), hostEntry)
		}
		seen[n] = true
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, errors.New("-kernels selects nothing")
	}
	return names, nil
}

func lookupKernel(name string) *kernelSpec {
	for i := range kernelTable {
		if kernelTable[i].Name == name {
			return &kernelTable[i]
		}
	}
	return nil
}
