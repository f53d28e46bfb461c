-- Revenue per day and currency; inputs are visible under their dataset names.
select cast(ordered_at as date) as day,
       currency,
       count(*) as orders,
       sum(amount) as revenue
from orders
group by 1, 2
