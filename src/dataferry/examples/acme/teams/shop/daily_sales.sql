-- Revenue per day and currency; inputs are visible under their dataset names.
select cast(ordered_at as date) as day,
       currency,
       count(*) as orders,
       cast(sum(amount) as decimal(18,2)) as revenue  -- decimal(38,2) otherwise
from orders
group by 1, 2
