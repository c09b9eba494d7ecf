#!/usr/bin/perl
# Independent DKIM check with Debian's Mail::DKIM, keys from the test DNS server.
# usage: verify_dkim.pl DNS_PORT < message ; prints one JSON object per signature.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS::Resolver;

my $port = shift or die "usage: $0 DNS_PORT < message\n";
my $resolver = Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port, recurse => 0,
                                      tcp_timeout => 5, udp_timeout => 5);
Mail::DKIM::DNS::resolver($resolver);

my $dkim = Mail::DKIM::Verifier->new();
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;

sub js { my $s = shift // ''; $s =~ s/\\/\\\\/g; $s =~ s/"/\\"/g; return "\"$s\""; }
foreach my $sig ($dkim->signatures) {
    printf "{\"domain\":%s,\"selector\":%s,\"algorithm\":%s,\"result\":%s,\"detail\":%s}\n",
        js($sig->domain), js($sig->selector), js($sig->algorithm), js($sig->result), js($sig->result_detail);
}
