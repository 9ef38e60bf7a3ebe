// Package procscan finds processes by what /proc says about them: the
// environment marker every process of a sky-coord node carries, parents,
// and whether a process has really exited. Outside Linux it finds nothing.
package procscan
