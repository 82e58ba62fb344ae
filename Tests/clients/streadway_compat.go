// What the streadway/amqp (and amqp091-go) integration suites rely on, run against a broker
// given as amqp://... in os.Args[1]. Prints one line per check; test_compat_clients.py compares
// them. Built with Debian's golang-github-streadway-amqp-dev (GOPATH mode).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/streadway/amqp"
)

func dial(url string) *amqp.Connection {
	c, err := amqp.Dial(url)
	if err != nil {
		fmt.Println("dial failed:", err)
		os.Exit(1)
	}
	return c
}

func main() {
	url := os.Args[1]

	// channel.flow(false): RabbitMQ refuses it; the suites expect the error, not a flow-ok.
	c := dial(url)
	ch, _ := c.Channel()
	fmt.Println("flow(false):", ch.Flow(false))
	c.Close()

	// Issue43: the server closes channel 1 (unknown exchange) while the client closes it too;
	// the connection and its other channels carry on.
	c = dial(url)
	c1, _ := c.Channel()
	c2, _ := c.Channel()
	c1.Publish("nonexisting-exchange", "", false, false, amqp.Publishing{})
	c1.Close()
	err := c2.ExchangeDeclare("test-channel-still-exists", "direct", false, true, false, false, nil)
	fmt.Println("issue43 second channel:", err)
	c.Close()

	// A confirm within 200 ms of the publish (TestIntegrationConfirm).
	c = dial(url)
	ch, _ = c.Channel()
	ch.QueueDeclare("streadway-confirm", false, true, false, false, nil)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	ch.Confirm(false)
	ch.Publish("", "streadway-confirm", false, false, amqp.Publishing{Body: []byte("confirm")})
	select {
	case conf := <-confirms:
		fmt.Println("confirm:", conf.DeliveryTag, conf.Ack)
	case <-time.After(200 * time.Millisecond):
		fmt.Println("confirm: none within 200ms")
	}

	// basic.cancel within 200 ms when the queue is deleted under its consumer
	// (TestIntegrationCancel: the same channel consumes and deletes).
	cancels := ch.NotifyCancel(make(chan string, 1))
	ch.QueueDeclare("streadway-cancel", false, true, false, false, nil)
	go func() {
		ch.Consume("streadway-cancel", "test.cancel", false, false, false, false, nil)
		ch.QueueDelete("streadway-cancel", false, false, false)
	}()
	select {
	case tag := <-cancels:
		fmt.Println("cancel:", tag)
	case <-time.After(200 * time.Millisecond):
		fmt.Println("cancel: none within 200ms")
	}
	c.Close()
}
