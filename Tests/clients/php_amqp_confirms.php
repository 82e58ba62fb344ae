<?php
// php-amqp (Debian's php-amqp) with publisher confirms and mandatory returns: prints the
// callbacks in the order the extension runs them. test_compat_clients.py compares the lines
// with what RabbitMQ produces. Usage: php php_amqp_confirms.php HOST PORT
$cnn = new AMQPConnection(['host' => $argv[1], 'port' => (int)$argv[2], 'read_timeout' => 2]);
$cnn->connect();
$ch = new AMQPChannel($cnn);
$ch->confirmSelect();
$ex = new AMQPExchange($ch);
$ex->setName('php-compat-' . bin2hex(random_bytes(4)));
$ex->setType(AMQP_EX_TYPE_FANOUT);
$ex->setFlags(AMQP_AUTODELETE);
$ex->declareExchange();

$acked = 0;
$want = 1;
$ch->setReturnCallback(function ($code, $text, $exchange, $key, AMQPBasicProperties $p, $body) {
    echo "return $code $text $body\n";
});
$ch->setConfirmCallback(function ($tag, $multiple) use (&$acked, &$want) {
    echo "ack $tag " . ($multiple ? "multiple" : "single") . "\n";
    $acked = $tag;
    return $acked < $want;
}, function ($tag, $multiple, $requeue) {
    echo "nack $tag\n";
    return false;
});

// Nothing bound: returned, then acked on its own.
$ex->publish('unroutable', 'key', AMQP_MANDATORY);
$ch->waitForConfirm(2);

// Bound: three routed messages, acked (coalesced or not) up to tag 4.
$q = new AMQPQueue($ch);
$q->setFlags(AMQP_EXCLUSIVE);
$q->declareQueue();
$q->bind($ex->getName());
$want = 4;
foreach (['a', 'b', 'c'] as $body) {
    $ex->publish($body, 'key');
}
try {
    $ch->waitForConfirm(2);
} catch (Exception $e) {
    echo get_class($e), ": ", $e->getMessage(), "\n";
}
echo "acked up to $acked\n";
