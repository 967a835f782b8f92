// The hello web app of the App Container walkthrough: answers every request on :5000.
package main

import (
	"log"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("request from %v\n", r.RemoteAddr)
		w.Write([]byte("Hello from App Container\n"))
	})
	log.Fatal(http.ListenAndServe(":5000", nil))
}
