// Package procscan finds processes by what /proc says about them: the
// environment marker every process of a sky-coord node carries, parents,
// whether a process has really exited, and the mount points this process
// sees. Outside Linux it finds nothing.
package procscan
