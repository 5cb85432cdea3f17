module trailmark.example/interop

go 1.19

require golang.org/x/mod v0.7.0

// Offline build against Debian's golang-golang-x-mod-dev sources (x/mod v0.7.0).
// With network access, drop this line to use the real module.
replace golang.org/x/mod => /usr/share/gocode/src/golang.org/x/mod
